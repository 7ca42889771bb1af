import ArgumentParser
import Broker
import ConcurrencySupport
import ExchangerLogging
import Foundation
import Logging
import ProcessSupport
import WorkerRuntime
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger-orchestrator`: the HTTP API and the exchange lifecycle work loop, in one process.
public struct OrchestratorCommand: AsyncParsableCommand {
    /// The command's name, abstract and discussion.
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-orchestrator",
        abstract: "Serve the exchange API and run the exchange lifecycle.",
        discussion: """
            API tokens: EXCHANGER_API_TOKENS (comma-separated) or EXCHANGER_API_TOKENS_FILE (one per line); \
            without any the process refuses to start unless --insecure-no-auth is given. \
            Case data: EXCHANGER_CASE_DATABASE_URL (required), EXCHANGER_CASE_DATABASE_PREFIX, EXCHANGER_CASE_COPY_*. \
            Completion: checked when a document's path ends (events on the EXCHANGER_ORCHESTRATOR_EVENT_QUEUE queue, exch-orch) \
            and every EXCHANGER_ORCHESTRATOR_CHECK_INTERVAL_SECONDS. \
            Signals: SIGTERM/SIGINT stop accepting requests, finish the step in hand and exit 0.
            """
    )

    @Option(help: "Broker database URL (default: EXCHANGER_DATABASE_URL, else the file named by EXCHANGER_DATABASE_URL_FILE).")
    var database: String?

    @Option(help: "Address to listen on (EXCHANGER_ORCHESTRATOR_HOST, default 127.0.0.1; containers set 0.0.0.0).")
    var host: String?

    @Option(help: "Port to listen on (EXCHANGER_ORCHESTRATOR_PORT, default 8080; 0 = any free port).")
    var port: Int?

    @Option(help: "This replica's name in the exchanges' leases (EXCHANGER_ORCHESTRATOR_REPLICA_ID, default hostname-pid).")
    var replicaId: String?

    @Flag(help: "Serve the /exchanges routes without authentication (development only).")
    var insecureNoAuth = false

    /// A command with every option at its default.
    public init() {}

    /// Connects the broker, serves the API and runs the work loop until SIGTERM or SIGINT.
    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        ProcessSignals.install([SIGTERM, SIGINT])
        signal(SIGPIPE, SIG_IGN)
        JSONLogHandler.bootstrapOnce(program: "exchanger-orchestrator", stream: .standardOutput)
        let logger = Logger(label: "exchanger.orchestrator")

        let settings = try OrchestratorServiceSettings(environment: environment)
        let tokens = try APITokens(environment: environment)
        if tokens.isEmpty && !insecureNoAuth {
            throw OrchestratorServiceError(.noAPITokens,
                "no API token configured: set EXCHANGER_API_TOKENS or EXCHANGER_API_TOKENS_FILE, or pass --insecure-no-auth")
        }
        if insecureNoAuth { logger.warning("--insecure-no-auth: the /exchanges routes accept every request") }
        let host = host ?? environment["EXCHANGER_ORCHESTRATOR_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        let port = try port ?? Self.port(environment)
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        let replica = replicaId ?? environment["EXCHANGER_ORCHESTRATOR_REPLICA_ID"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let dependencies = try OrchestratorDependencies.makeDefault(environment: environment, logger: logger)
        let url = try WorkerOptions.resolveDatabaseURL(option: database, environment: environment)

        // Subscribe before anything slow, so a SIGTERM during the connect retries is not lost.
        let signals = ProcessSignals.events()
        let stop = StopSignal()
        let broker = try await Self.connect(url: url, logger: logger)
        let service = ExchangeService(broker: broker, copier: dependencies.copier, settings: settings, logger: logger)
        let server: OrchestratorHTTPServer
        do {
            server = try await OrchestratorHTTPServer.start(
                service: service, tokens: insecureNoAuth ? nil : tokens, host: host, port: port, logger: logger)
        } catch {
            await broker.close()
            throw error
        }
        logger.info("orchestrator started", metadata: [
            "replica": "\(replica)", "port": "\(server.port)", "tokens": "\(tokens.count)",
        ])
        let wakeup = WorkLoopWakeup()
        let loop = OrchestratorWorkLoop(runner: service.runner, owner: replica, settings: settings, logger: logger, wakeup: wakeup)
        let listener = LifecycleEventListener(
            broker: broker, store: service.store, settings: settings.events, checkInterval: settings.core.drain.checkInterval,
            wakeup: wakeup, logger: logger)
        let events = Task { await listener.run(stop: stop) }
        let work = Task { await loop.run(stop: stop) }

        for await received in signals where received == SIGTERM || received == SIGINT {
            logger.info("stopping", metadata: ["signal": "\(received)"])
            break
        }
        stop.request()
        await server.shutdown()
        // The step in hand may run on for the grace period; then it is interrupted.
        let grace = settings.shutdownGrace
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await work.value
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            logger.warning("the step in hand did not finish within the grace period; interrupting it")
            work.cancel()
            await work.value
        }
        events.cancel()
        await events.value
        await broker.close()
        logger.info("orchestrator stopped", metadata: ["replica": "\(replica)"])
    }

    static func port(_ environment: [String: String]) throws -> Int {
        guard let text = environment["EXCHANGER_ORCHESTRATOR_PORT"], !text.isEmpty else { return 8080 }
        guard let value = Int(text), (0...65535).contains(value) else {
            throw ValidationError("EXCHANGER_ORCHESTRATOR_PORT='\(text)' must be an integer in 0…65535")
        }
        return value
    }

    /// Connects, retrying for a minute while the database is not up yet (containers start together).
    static func connect(url: String, logger: Logger) async throws -> Broker {
        try await Broker.connectWhenAvailable(
            url: url, configuration: try BrokerConfiguration(environment: ProcessInfo.processInfo.environment), logger: logger)
    }
}
