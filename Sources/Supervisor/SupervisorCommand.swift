import ArgumentParser
import Broker
import ExchangerLogging
import Foundation
import Logging
import ProcessSupport
import WorkerRuntime
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger-supervisor`: runs the programs of `supervisor.conf` and the per-exchange
/// deployments the orchestrator writes to the broker.
public struct SupervisorCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-supervisor",
        abstract: "Run the global programs of supervisor.conf and the per-exchange worker deployments.",
        discussion: """
            Signals: SIGTERM/SIGINT drain everything and exit 0; SIGHUP re-reads the configuration \
            and applies only the difference; SIGUSR2 reopens log files.
            """
    )

    @Option(name: .shortAndLong, help: "The configuration file (env EXCHANGER_SUPERVISOR_CONFIG; default ./supervisor.conf).")
    var config: String?

    @Option(help: "The broker database URL, overriding [supervisor] broker_url and EXCHANGER_DATABASE_URL.")
    var database: String?

    @Option(help: "The HTTP port for /healthz, /readyz, /metrics, /status (0 = off; env EXCHANGER_SUPERVISOR_HTTP_PORT; default [supervisor] http_port).")
    var httpPort: Int?

    @Option(help: "This supervisor's identifier in the broker (env EXCHANGER_SUPERVISOR_IDENTIFIER; default [supervisor] identifier).")
    var identifier: String?

    @Flag(help: "Run only the global programs, without a broker (no deployments).")
    var noBroker = false

    @Flag(help: "Parse and check the configuration, print the programs, and exit.")
    var check = false

    @Flag(help: "Drain and exit (as on SIGTERM) when the process that started this one dies (exchanger run uses it).")
    var stopWhenOrphaned = false

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let path = config ?? environment["EXCHANGER_SUPERVISOR_CONFIG"] ?? "supervisor.conf"
        var configuration = try SupervisorConfiguration.load(path: path)
        if let port = httpPort ?? environment["EXCHANGER_SUPERVISOR_HTTP_PORT"].flatMap(Int.init) {
            configuration.supervisor.httpPort = port
        }
        if let identifier = identifier ?? environment["EXCHANGER_SUPERVISOR_IDENTIFIER"] {
            configuration.supervisor.identifier = identifier
        }
        if check {
            for program in configuration.programs {
                print("\(program.name)\t\(program.scope.rawValue)\t\(program.minProcs)-\(program.maxProcs)\t\(program.command)")
            }
            return
        }

        // Signals first: SIGCHLD must have a handler before the first child exists.
        ProcessSignals.install([SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD])
        signal(SIGPIPE, SIG_IGN)

        let combined = try configuration.supervisor.logFile.flatMap { settings in
            try configuration.logFilePath(environment: environment).map {
                try RotatingLogFile(path: $0, maxBytes: settings.maxBytes, backups: settings.backups)
            }
        }
        let tailBytes = try Self.tailBytes(environment)
        let controlToken = try Self.controlToken(environment)
        let recent = RecentLogs(capacity: tailBytes)
        let multiplexer = LogMultiplexer(output: STDOUT_FILENO, combinedFile: combined, recent: recent)
        JSONLogHandler.bootstrapOnce(program: "exchanger-supervisor", stream: .custom({ line in multiplexer.emit(line) }))
        let logger = Logger(label: "exchanger.supervisor")

        var broker: Broker?
        // An explicit URL (--database, [supervisor] broker_url) is handed to the children; one from
        // the environment (EXCHANGER_DATABASE_URL or its _FILE secret) reaches them as it is, so a
        // secret read from a file never becomes an environment value.
        let explicit = try database ?? (configuration.supervisor.brokerURL.isEmpty ? nil : configuration.brokerURL(environment: environment))
        if !noBroker {
            let url = try explicit ?? WorkerOptions.resolveDatabaseURL(option: nil, environment: environment)
            broker = try await Self.connect(url: url, logger: logger)
        }

        let spawner = try ProcessSpawner()
        let supervisor = Supervisor(
            configuration: configuration, broker: broker, brokerURL: explicit, spawner: spawner, multiplexer: multiplexer, logger: logger)

        var endpoint: MetricsEndpoint?
        if configuration.supervisor.httpPort != 0 {
            endpoint = try await MetricsEndpoint.start(
                host: configuration.supervisor.httpHost, port: configuration.supervisor.httpPort, logger: logger,
                routes: SupervisorHTTP.routes(supervisor),
                handler: SupervisorHTTP.control(supervisor, recent: recent, token: controlToken)
            )
        }
        // Started by another program (exchanger run): when it dies, this supervisor is re-parented;
        // drain exactly as on SIGTERM rather than run on unwatched.
        let orphanWatch: Task<Void, Never>? = stopWhenOrphaned ? Task {
            let parent = getppid()
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if getppid() != parent {
                    logger.warning("the parent process died; stopping", metadata: ["parent": "\(parent)"])
                    kill(getpid(), SIGTERM)
                    return
                }
            }
        } : nil
        let status = await supervisor.run()
        orphanWatch?.cancel()
        await endpoint?.close()
        await broker?.close()
        await multiplexer.shutdown()
        if status != 0 { throw ExitCode(status) }
    }

    /// `EXCHANGER_SUPERVISOR_TAIL_BYTES`: the output kept per program for `exchanger ctl tail`.
    static func tailBytes(_ environment: [String: String]) throws -> Int {
        guard let text = environment["EXCHANGER_SUPERVISOR_TAIL_BYTES"], !text.isEmpty else { return 64 * 1024 }
        guard let value = Int(text), (1024...(64 << 20)).contains(value) else {
            throw ValidationError("EXCHANGER_SUPERVISOR_TAIL_BYTES must be a number of bytes in 1024…67108864, not '\(text)'")
        }
        return value
    }

    /// `EXCHANGER_SUPERVISOR_CONTROL_TOKEN`, or the first line of the file `…_FILE` names: the
    /// bearer token `exchanger ctl` must send; nil lets only loopback clients control the programs.
    static func controlToken(_ environment: [String: String]) throws -> String? {
        if let token = environment["EXCHANGER_SUPERVISOR_CONTROL_TOKEN"], !token.isEmpty { return token }
        guard let path = environment["EXCHANGER_SUPERVISOR_CONTROL_TOKEN_FILE"], !path.isEmpty else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let line = text.split(separator: "\n").first.map({ $0.trimmingCharacters(in: .whitespaces) }), !line.isEmpty
        else {
            throw ValidationError("EXCHANGER_SUPERVISOR_CONTROL_TOKEN_FILE: cannot read a token from \(path)")
        }
        return line
    }

    /// Connects, retrying while the database is not up yet (containers start together).
    static func connect(url: String, logger: Logger) async throws -> Broker {
        // The supervisor needs no 10 ms wake-ups on SQLite: deployment changes can wait a quarter
        // of a second, and the idle CPU stays low.
        var configuration = try BrokerConfiguration(environment: ProcessInfo.processInfo.environment)
        configuration.sqliteChangePollInterval = .milliseconds(250)
        configuration.maxConnections = 4
        return try await Broker.connectWhenAvailable(url: url, configuration: configuration, logger: logger)
    }
}

/// The supervisor's HTTP routes besides `/metrics` and `/healthz`.
enum SupervisorHTTP {
    /// The control routes `exchanger ctl` uses, for the global programs:
    ///
    /// - `GET /programs/NAME`: the program's processes (as in `/status`);
    /// - `POST /programs/NAME/start|stop|restart`: ``Supervisor/control(_:program:)``;
    /// - `GET /programs/NAME/log?from=OFFSET&last=BYTES`: its recent output
    ///   (``RecentLogs/read(_:from:last:)``) as `{"program","start","end","skipped","text"}`.
    ///
    /// With a control token, each needs `Authorization: Bearer TOKEN`; without one, only a client
    /// on a loopback address may use them (403 otherwise).
    static func control(
        _ supervisor: Supervisor, recent: RecentLogs, token: String?
    ) -> @Sendable (HTTPRouteRequest) async -> HTTPRouteResponse? {
        { request in
            let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
            guard parts.count >= 2, parts[0] == "programs" else { return nil }
            if let token {
                guard let header = request.authorization, header.hasPrefix("Bearer "), constantTimeEqual(String(header.dropFirst(7)), token) else {
                    return error(401, "unauthorized", "a valid bearer token is required (EXCHANGER_SUPERVISOR_CONTROL_TOKEN)")
                }
            } else if !request.fromLoopback {
                return error(403, "forbidden", "control from another host needs EXCHANGER_SUPERVISOR_CONTROL_TOKEN set on the supervisor")
            }
            let name = parts[1]
            switch (request.method, parts.count > 2 ? parts[2] : nil) {
            case ("GET", nil):
                let slots = await supervisor.status().filter { $0.program == name && $0.deploymentID.isEmpty }
                return json(200, slots)
            case ("POST", let verb?) where SupervisorControlAction(rawValue: verb) != nil:
                do throws(SupervisorControlError) {
                    let slots = try await supervisor.control(SupervisorControlAction(rawValue: verb) ?? .start, program: name)
                    return json(200, slots)
                } catch {
                    let status = error.code == .unknownProgram ? 404 : 409
                    return Self.error(status, error.code.description, error.message)
                }
            case ("GET", "log"?):
                let from = request.query["from"].flatMap { Int64($0) }
                let last = request.query["last"].flatMap { Int($0) } ?? 1600
                let slice = recent.read(name, from: from, last: last)
                struct Log: Encodable {
                    var program: String
                    var start: Int64
                    var end: Int64
                    var skipped: Bool
                    var text: String
                }
                return json(200, Log(
                    program: name, start: slice?.start ?? 0, end: slice?.end ?? 0, skipped: slice?.skipped ?? false,
                    text: String(decoding: slice?.bytes ?? [], as: UTF8.self)))
            default:
                return error(404, "notFound", "no route \(request.method) \(request.path)")
            }
        }
    }

    static func json(_ status: Int, _ value: some Encodable) -> HTTPRouteResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return HTTPRouteResponse(status: status, contentType: "application/json", body: body + "\n")
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> HTTPRouteResponse {
        json(status, ["error": ["code": code, "message": message]])
    }

    /// Compares without an early exit, so the time taken does not tell how much of a guess matched.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }

    static func routes(_ supervisor: Supervisor) -> [String: @Sendable () async -> HTTPRouteResponse] {
        [
            "/readyz": {
                let readiness = await supervisor.readiness()
                return HTTPRouteResponse(status: readiness.ready ? 200 : 503, body: readiness.reason + "\n")
            },
            "/status": {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                let body = (try? encoder.encode(await supervisor.status())).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
                return HTTPRouteResponse(status: 200, contentType: "application/json", body: body + "\n")
            },
        ]
    }
}
