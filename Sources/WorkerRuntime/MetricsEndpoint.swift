import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The answer of an extra ``MetricsEndpoint`` route.
public struct HTTPRouteResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A request a ``MetricsEndpoint`` hands to its request handler.
public struct HTTPRouteRequest: Sendable {
    /// `GET`, `POST`, …
    public var method: String
    /// The path, without the query.
    public var path: String
    /// The query's parameters (percent-decoded; the last of a repeated name).
    public var query: [String: String]
    /// The `Authorization` header, if any.
    public var authorization: String?
    /// Whether the peer is a loopback address (127.0.0.0/8 or ::1).
    public var fromLoopback: Bool

    /// Whether `address` is a loopback address: 127.0.0.0/8, `::1`, or 127.x mapped into IPv6.
    public static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let ip = address?.ipAddress else { return false }
        return ip == "::1" || ip.hasPrefix("127.") || ip.hasPrefix("::ffff:127.")
    }
}

/// A tiny HTTP server for `GET /metrics` (Prometheus text format), `GET /healthz`, and any extra
/// `GET` routes the process adds (the supervisor's `/readyz` and `/status`), started when a
/// process is given a metrics port.
public final class MetricsEndpoint: Sendable {
    /// The registry every instrument of this process reports to.
    public let registry: PrometheusCollectorRegistry
    private let channel: any Channel
    /// The port actually bound (useful with port 0).
    public let port: Int

    /// Bootstraps swift-metrics with a Prometheus factory (once per process) and listens on
    /// `host:port`.
    /// - Parameters:
    ///   - routes: extra `GET` routes by exact path.
    ///   - handler: asked first for every request; nil lets the routes and the built-in paths answer.
    public static func start(
        host: String = "127.0.0.1", port: Int, logger: Logger,
        routes: [String: @Sendable () async -> HTTPRouteResponse] = [:],
        handler: (@Sendable (HTTPRouteRequest) async -> HTTPRouteResponse?)? = nil
    ) async throws -> MetricsEndpoint {
        let registry = PrometheusSetup.registry
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(registry: registry, routes: routes, handler: handler))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        let bound = channel.localAddress?.port ?? port
        logger.info("metrics endpoint listening", metadata: ["port": "\(bound)"])
        return MetricsEndpoint(registry: registry, channel: channel, port: bound)
    }

    private init(registry: PrometheusCollectorRegistry, channel: any Channel, port: Int) {
        self.registry = registry
        self.channel = channel
        self.port = port
    }

    public func close() async {
        try? await channel.close()
    }
}

/// The process-wide registry; swift-metrics is bootstrapped with it on first use.
public enum PrometheusSetup {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()
}

private final class MetricsHTTPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let routes: [String: @Sendable () async -> HTTPRouteResponse]
    let handler: (@Sendable (HTTPRouteRequest) async -> HTTPRouteResponse?)?
    init(
        registry: PrometheusCollectorRegistry, routes: [String: @Sendable () async -> HTTPRouteResponse],
        handler: (@Sendable (HTTPRouteRequest) async -> HTTPRouteResponse?)?
    ) {
        self.registry = registry
        self.routes = routes
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        if let handler {
            let request = HTTPRouteRequest(
                method: head.method.rawValue, path: path, query: Self.query(head.uri), authorization: head.headers.first(name: "Authorization"),
                fromLoopback: HTTPRouteRequest.isLoopback(context.remoteAddress))
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await handler(request) }.whenSuccess { response in
                if let response {
                    this.value.respond(
                        context: bound.value, head: head, status: HTTPResponseStatus(statusCode: response.status),
                        contentType: response.contentType, body: Array(response.body.utf8))
                } else {
                    this.value.answerBuiltIn(context: bound.value, head: head, path: path)
                }
            }
            return
        }
        answerBuiltIn(context: context, head: head, path: path)
    }

    static func query(_ uri: String) -> [String: String] {
        guard let start = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in uri[uri.index(after: start)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(parts[1])) : ""
            result[name] = value
        }
        return result
    }

    private func answerBuiltIn(context: ChannelHandlerContext, head: HTTPRequestHead, path: String) {
        if head.method == .GET, let route = routes[path] {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await route() }.whenSuccess { response in
                handler.value.respond(
                    context: bound.value, head: head, status: HTTPResponseStatus(statusCode: response.status),
                    contentType: response.contentType, body: Array(response.body.utf8)
                )
            }
            return
        }
        let status: HTTPResponseStatus
        let body: [UInt8]
        var contentType = "text/plain; charset=utf-8"
        switch (head.method, path) {
        case (.GET, "/metrics"):
            status = .ok
            body = registry.emitToBuffer()
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        case (.GET, "/healthz"):
            status = .ok
            body = Array("ok\n".utf8)
        default:
            status = .notFound
            body = Array("not found\n".utf8)
        }
        respond(context: context, head: head, status: status, contentType: contentType, body: body)
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
