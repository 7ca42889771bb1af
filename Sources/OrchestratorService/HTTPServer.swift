import Hummingbird
import Logging
import ServiceLifecycle

/// The API's HTTP server running in the background: started with ``start(service:tokens:host:port:logger:)``,
/// stopped gracefully with ``shutdown()`` (it stops accepting connections and finishes the
/// requests in progress).
public final class OrchestratorHTTPServer: Sendable {
    /// The port actually bound (useful with port 0).
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Binds `host:port` and serves ``OrchestratorAPI`` until ``shutdown()``.
    /// - Throws: the bind error when the address cannot be bound.
    public static func start(
        service: ExchangeService, tokens: APITokens?, host: String, port: Int, logger: Logger
    ) async throws -> OrchestratorHTTPServer {
        let (ports, continuation) = AsyncThrowingStream<Int, any Error>.makeStream()
        let application = OrchestratorAPI.makeApplication(
            service: service, tokens: tokens, host: host, port: port, logger: logger,
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? port) })
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [application], logger: logger))
        let task = Task {
            do {
                try await group.run()
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
                throw error
            }
        }
        for try await bound in ports {
            logger.info("HTTP API listening", metadata: ["host": "\(host)", "port": "\(bound)"])
            return OrchestratorHTTPServer(port: bound, group: group, task: task)
        }
        throw OrchestratorServiceError(.invalidSetting, "the HTTP server on \(host):\(port) stopped before it listened")
    }

    /// Stops accepting connections, lets the requests in progress finish, and returns when the
    /// server has stopped.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
