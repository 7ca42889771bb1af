import ArgumentParser
import Broker
import Deployments
import ExchangerLogging
import Foundation
import Logging
import ObjectStorage
import ProcessSupport

#if canImport(Glibc)
import Glibc
#endif

/// What a processor's handler is built from.
public struct WorkerContext: Sendable {
    public var broker: Broker
    public var stager: PayloadStager
    public var logger: Logger
    public var environment: [String: String]
}

/// The `main` of every worker executable: JSON logs on stdout, the broker, the staging store,
/// an optional Prometheus endpoint, broker maintenance, SIGTERM/SIGINT → drain and exit 0.
public enum WorkerProcess {
    /// Runs a worker until it is told to stop.
    /// - Parameters:
    ///   - executable: the executable's name for logs (`exchanger-s3-copy`).
    ///   - program: the program name of its queues (`s3-copy`).
    ///   - defaultQueue: the queue a global processor serves when neither `--queue` nor `--program` is given.
    ///   - prepare: runs once after connecting (ensure global queues and subscriptions exist).
    ///   - makeHandler: builds the handler.
    public static func run(
        executable: String, program: String, options: WorkerOptions, defaultQueue: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        prepare: @Sendable (WorkerContext) async throws -> Void = { _ in },
        makeHandler: @Sendable (WorkerContext) async throws -> any MessageHandler
    ) async throws {
        JSONLogHandler.bootstrapOnce(program: executable, stream: .standardOutput)
        let logger = Logger(label: "exchanger.\(program)")
        let configuration = try options.configuration(program: program, defaultQueue: defaultQueue, environment)
        ProcessSignals.install()
        let signals = ProcessSignals.events()

        let metricsEndpoint: MetricsEndpoint?
        if let port = try options.metricsPort(environment) {
            metricsEndpoint = try await MetricsEndpoint.start(host: options.metricsHost(environment), port: port, logger: logger)
        } else {
            metricsEndpoint = nil
        }

        let broker = try await Broker.connect(
            url: try options.databaseURL(environment), configuration: try BrokerConfiguration(environment: environment), logger: logger)
        var stagingStore: (any ObjectStore)?
        if let url = options.stagingStoreURL(environment) {
            stagingStore = try await ObjectStorage.open(url, environment: environment, logger: logger)
        }
        let context = WorkerContext(broker: broker, stager: PayloadStager(store: stagingStore), logger: logger, environment: environment)
        var handler: (any MessageHandler)?
        let reporter = configuration.presenceInterval.map {
            PresenceReporter(
                store: DeploymentStore(broker: broker), configuration: configuration, interval: $0, environment: environment, logger: logger)
        }
        var presence: Task<Void, Never>?
        do {
            try await prepare(context)
            let made = try await makeHandler(context)
            handler = made
            if let backed = made as? any StorageBackedHandler { try await checkStore(backed.store, executable: executable, logger: logger) }
            let worker = Worker(broker: broker, handler: made, configuration: configuration, stager: context.stager, logger: logger)
            let maintenance = Task { await broker.runMaintenance() }
            presence = reporter.map { reporter in Task { await reporter.run() } }
            let signalWatcher = Task {
                for await signal in signals where signal == SIGTERM || signal == SIGINT {
                    logger.info("stop requested; finishing the batch in hand", metadata: ["signal": "\(signal)"])
                    worker.requestStop()
                }
            }
            try await worker.run()
            signalWatcher.cancel()
            maintenance.cancel()
            presence?.cancel()
            // The loop is done and every acknowledgement committed: what is left only releases
            // resources, and the process exits after `exitGrace` whether or not it finished.
            let staging = stagingStore
            let runningPresence = presence
            let finished = await finish(within: configuration.exitGrace) {
                _ = await maintenance.value
                _ = await runningPresence?.value
                await reporter?.withdraw()
                await made.shutdown()
                try? await staging?.shutdown()
                await broker.close()
                await metricsEndpoint?.close()
            }
            if !finished {
                logger.warning("clean-up did not finish within the exit grace; exiting anyway", metadata: [
                    "grace": "\(configuration.exitGrace)",
                ])
            }
        } catch {
            logger.critical("worker failed", metadata: ["error": "\(error)"])
            // The presence row is left to expire: the database may be what failed.
            presence?.cancel()
            await handler?.shutdown()
            try? await stagingStore?.shutdown()
            await broker.close()
            await metricsEndpoint?.close()
            throw error
        }
    }

    /// The store the handler works on must be there and let this process in: one that refuses it
    /// (credentials, a missing bucket or directory, no write permission) stops the worker at start
    /// with one line naming the store and what to check, and the configuration-error status 78,
    /// instead of failing every document. One that cannot be reached right now only warns: the
    /// documents' own retries cover an outage.
    static func checkStore(_ store: any ObjectStore, executable: String, logger: Logger) async throws {
        do {
            try await store.probe()
        } catch let error as ObjectStorageError where !error.isTransient {
            let fix = store.location.scheme == .s3
                ? "check EXCHANGER_STORAGE_URL (the bucket) and the AWS_* credentials, region and endpoint"
                : "check EXCHANGER_STORAGE_URL (the directory) and this user's permissions on it"
            FileHandle.standardError.write(Data("\(executable): cannot start: object storage \(store.location): \(error.message); \(fix)\n".utf8))
            throw ExitCode(78)
        } catch {
            logger.warning("object storage cannot be reached now; documents are retried", metadata: [
                "storage": "\(store.location)", "error": "\(error)",
            ])
        }
    }

    /// Runs `cleanup`, waiting for it at most `grace`; true when it finished in time. A clean-up
    /// still running afterwards is left behind (the process is about to exit).
    public static func finish(within grace: Duration, _ cleanup: @escaping @Sendable () async -> Void) async -> Bool {
        let done = AsyncStream<Bool>.makeStream()
        let work = Task {
            await cleanup()
            done.continuation.yield(true)
        }
        let timer = Task {
            try? await Task.sleep(for: grace)
            done.continuation.yield(false)
        }
        var iterator = done.stream.makeAsyncIterator()
        let finished = await iterator.next() ?? false
        timer.cancel()
        if !finished { work.cancel() }
        done.continuation.finish()
        return finished
    }
}
