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
        let multiplexer = LogMultiplexer(output: STDOUT_FILENO, combinedFile: combined)
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
                routes: SupervisorHTTP.routes(supervisor)
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

    /// Connects, retrying while the database is not up yet (containers start together).
    static func connect(url: String, logger: Logger) async throws -> Broker {
        // The supervisor needs no 10 ms wake-ups on SQLite: deployment changes can wait a quarter
        // of a second, and the idle CPU stays low.
        var configuration = BrokerConfiguration()
        configuration.sqliteChangePollInterval = .milliseconds(250)
        configuration.maxConnections = 4
        return try await Broker.connectWhenAvailable(url: url, configuration: configuration, logger: logger)
    }
}

/// The supervisor's HTTP routes besides `/metrics` and `/healthz`.
enum SupervisorHTTP {
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
