import Broker
import DatabaseSupport
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Orchestrator
import WorkerRuntime

/// One route of the orchestrator's HTTP API, in OpenAPI spelling (`/exchanges/{jobId}`).
public struct APIRoute: Sendable, Hashable {
    /// What the route does.
    public enum Endpoint: String, Sendable, Hashable {
        /// `POST /exchanges`, `POST /exchange`.
        case submit
        /// `GET /exchanges/{jobId}`.
        case get
        /// `GET /exchanges`.
        case list
        /// `POST /exchanges/{jobId}/cancel`, `DELETE /exchanges/{jobId}` (its alias).
        case cancel
        /// `POST /exchanges/{jobId}/retry`.
        case retry
        /// `GET /healthz`.
        case health
        /// `GET /readyz`.
        case ready
        /// `GET /metrics`.
        case metrics
        /// `GET /openapi.yaml`.
        case openAPI
    }

    /// `GET`, `POST` or `DELETE`.
    public var method: String
    /// The path, parameters in braces.
    public var path: String
    /// The handler.
    public var endpoint: Endpoint
    /// Whether the route needs a bearer token.
    public var authenticated: Bool
}

/// The orchestrator's HTTP API (Hummingbird): the exchanges routes behind bearer-token
/// authentication, and the unauthenticated `/healthz`, `/readyz`, `/metrics`, `/openapi.yaml`.
///
/// Every error is a JSON body `{"error": {"code": …, "message": …, "field": …}}` (`field` only for
/// a request field at fault). A retried `POST` (same idempotency key, equivalent request) answers
/// 202 like the first, with the same `jobId` and `"created": false`. Each request is logged as one
/// JSON line (`method`, `path`, `status`, `ms`, and `jobId` when known).
public enum OrchestratorAPI {
    /// Every route the router serves; the router is built from this list.
    public static let routes: [APIRoute] = [
        APIRoute(method: "POST", path: "/exchanges", endpoint: .submit, authenticated: true),
        APIRoute(method: "POST", path: "/exchange", endpoint: .submit, authenticated: true),
        APIRoute(method: "GET", path: "/exchanges", endpoint: .list, authenticated: true),
        APIRoute(method: "GET", path: "/exchanges/{jobId}", endpoint: .get, authenticated: true),
        APIRoute(method: "DELETE", path: "/exchanges/{jobId}", endpoint: .cancel, authenticated: true),
        APIRoute(method: "POST", path: "/exchanges/{jobId}/cancel", endpoint: .cancel, authenticated: true),
        APIRoute(method: "POST", path: "/exchanges/{jobId}/retry", endpoint: .retry, authenticated: true),
        APIRoute(method: "GET", path: "/healthz", endpoint: .health, authenticated: false),
        APIRoute(method: "GET", path: "/readyz", endpoint: .ready, authenticated: false),
        APIRoute(method: "GET", path: "/metrics", endpoint: .metrics, authenticated: false),
        APIRoute(method: "GET", path: "/openapi.yaml", endpoint: .openAPI, authenticated: false),
    ]

    /// The methods ``routes`` declare for the concrete `path` (`/exchanges/abc`), in route order;
    /// empty when no route has this path.
    public static func allowedMethods(path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        var methods: [String] = []
        for route in routes {
            let pattern = route.path.split(separator: "/", omittingEmptySubsequences: false)
            guard pattern.count == segments.count else { continue }
            let matches = zip(pattern, segments).allSatisfy { part, segment in
                part.hasPrefix("{") ? !segment.isEmpty : part == segment
            }
            if matches, !methods.contains(route.method) { methods.append(route.method) }
        }
        return methods
    }

    /// The OpenAPI document (`openapi.yaml`, compiled in).
    public static func openAPIDocument() throws -> String {
        openAPIText
    }

    /// The router of ``routes``. `tokens` nil turns authentication off (`--insecure-no-auth`).
    public static func makeRouter(service: ExchangeService, tokens: APITokens?, logger: Logger) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        // Request counts and durations (`http_server_*`) go to the registry `/metrics` serves,
        // which bootstraps swift-metrics on first use: touch it before the middleware records.
        _ = PrometheusSetup.registry
        router.middlewares.add(MetricsMiddleware())
        router.middlewares.add(UnmatchedRouteMiddleware(logger: logger))
        let handler = Handler(service: service, tokens: tokens, logger: logger)
        for route in routes {
            router.on(RouterPath(route.path), method: HTTPRequest.Method(route.method) ?? .get) { request, context in
                await handler.respond(route, request, context)
            }
        }
        return router
    }

    /// The application serving the API on `host:port` (port 0: any free port; `onServerRunning`
    /// gets the bound channel).
    public static func makeApplication(
        service: ExchangeService, tokens: APITokens?, host: String, port: Int, logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> Application<RouterResponder<BasicRequestContext>> {
        Application(
            router: makeRouter(service: service, tokens: tokens, logger: logger),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "exchanger-orchestrator"),
            onServerRunning: onServerRunning, logger: logger)
    }
}

/// An HTTP failure with its JSON error body.
struct APIFailure: Error {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var field: String?
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    var response: Response {
        var fields: [String: String] = ["code": code, "message": message]
        if let field { fields["field"] = field }
        var response = JSONBody.response(status, ["error": fields])
        for header in headers { response.headers.append(header) }
        return response
    }
}

enum JSONBody {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(
                date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
        }
        return encoder
    }()

    static func response(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":{"code":"internal","message":"cannot encode the response"}}"#.utf8)
        var bytes = data
        bytes.append(UInt8(ascii: "\n"))
        return Response(
            status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func text(_ status: HTTPResponse.Status, _ text: String, contentType: String) -> Response {
        Response(status: status, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Turns the router's own errors into JSON bodies, and logs them: an unknown path is 404, an
/// undeclared method on a known path 405 with `Allow`.
struct UnmatchedRouteMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var failure: APIFailure
            let allowed = OrchestratorAPI.allowedMethods(path: request.uri.path)
            if let error = error as? any HTTPResponseError, error.status == .notFound || error.status == .methodNotAllowed, !allowed.isEmpty {
                // A known path with an undeclared method.
                failure = APIFailure(
                    .methodNotAllowed, "methodNotAllowed", "\(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))")
                failure.headers = [.allow: allowed.joined(separator: ", ")]
            } else if let error = error as? any HTTPResponseError, error.status == .notFound {
                failure = APIFailure(.notFound, "notFound", "no route for \(request.method) \(request.uri.path)")
            } else if let error = error as? any HTTPResponseError {
                failure = APIFailure(error.status, "http", error.status.reasonPhrase)
            } else {
                failure = APIFailure(.internalServerError, "internal", "internal error")
            }
            logger.info("request", metadata: [
                "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(failure.status.code)",
            ])
            return failure.response
        }
    }
}

/// The handlers of every route.
struct Handler: Sendable {
    let service: ExchangeService
    let tokens: APITokens?
    let logger: Logger

    static let idempotencyKeyHeader = HTTPField.Name("Idempotency-Key")

    func respond(_ route: APIRoute, _ request: Request, _ context: BasicRequestContext) async -> Response {
        let started = ContinuousClock.now
        var jobID = context.parameters.get("jobId")
        var retryJobID: String?
        let response: Response
        do {
            if route.authenticated { try authenticate(request) }
            switch route.endpoint {
            case .submit:
                let (result, id) = try await submit(request)
                jobID = id
                response = result
            case .get: response = try await get(jobID)
            case .list: response = try await list(request)
            case .cancel: response = try await cancel(jobID)
            case .retry:
                let (result, id) = try await retry(jobID)
                if let id { retryJobID = id }
                response = result
            case .health: response = JSONBody.response(.ok, ["status": "ok"])
            case .ready:
                response = await service.isReady()
                    ? JSONBody.response(.ok, ["status": "ready"])
                    : APIFailure(.serviceUnavailable, "notReady", "the broker does not answer").response
            case .metrics:
                let text = String(decoding: PrometheusSetup.registry.emitToBuffer(), as: UTF8.self)
                response = JSONBody.text(.ok, text, contentType: "text/plain; version=0.0.4; charset=utf-8")
            case .openAPI:
                response = JSONBody.text(.ok, try OrchestratorAPI.openAPIDocument(), contentType: "application/yaml")
            }
        } catch let failure as APIFailure {
            response = failure.response
        } catch let error as OrchestratorError {
            response = Self.failure(error).response
        } catch where Self.isDatabaseUnavailable(error) {
            logger.warning("broker database unavailable", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            response = Self.unavailable(retryAfter: service.settings.retryAfter).response
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            response = APIFailure(.internalServerError, "internal", "internal error").response
        }
        var metadata: Logger.Metadata = [
            "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
            "ms": "\((ContinuousClock.now - started).wholeMilliseconds)",
        ]
        if let jobID { metadata["jobId"] = "\(jobID)" }
        if let retryJobID { metadata["retryJobId"] = "\(retryJobID)" }
        // Reads that succeed (clients polling an exchange every 250 ms, probes, scrapes) log at
        // debug, so a log tail shows changes and failures; every write and every failure at info.
        let quiet = request.method == .get && response.status.code < 400
        logger.log(level: quiet ? .debug : .info, "request", metadata: metadata)
        return response
    }

    static func failure(_ error: OrchestratorError) -> APIFailure {
        let status: HTTPResponse.Status = switch error.code {
        case .invalidRequest: .badRequest
        case .idempotencyConflict, .stateConflict, .invalidTransition: .conflict
        case .notFound: .notFound
        default: .internalServerError
        }
        return APIFailure(status, error.code.description, error.message, field: error.field)
    }

    /// Whether `error` is the broker's database being unreachable (connection refused or lost,
    /// server shutting down or restarting, no pooled connection in time): a client may retry.
    /// Other database errors (a bad statement, a constraint) stay internal errors.
    static func isDatabaseUnavailable(_ error: any Error) -> Bool {
        if let error = error as? BrokerError {
            return error.code == .closed || (error.underlying.map(isConnectionClass) ?? false)
        }
        if let error = error as? DatabaseError { return isConnectionClass(error) }
        return false
    }

    private static func isConnectionClass(_ error: DatabaseError) -> Bool {
        if [.connectionFailed, .connectionClosed, .poolTimeout, .poolClosed].contains(error.code) { return true }
        guard let sqlState = error.sqlState else { return false }
        // 08 connection exception; 57P01-57P03 admin/crash shutdown, cannot connect now; 53300 too many connections.
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == "53300"
    }

    /// 503 `unavailable` with `Retry-After` (whole seconds, at least 1).
    static func unavailable(retryAfter: Duration) -> APIFailure {
        var failure = APIFailure(.serviceUnavailable, "unavailable", "the broker database is unreachable; retry later")
        failure.headers = [.retryAfter: "\(max(1, retryAfter.components.seconds))"]
        return failure
    }

    private func authenticate(_ request: Request) throws(APIFailure) {
        guard let tokens else { return }
        guard let token = APITokens.bearerToken(request.headers[.authorization]), tokens.accepts(token) else {
            var failure = APIFailure(.unauthorized, "unauthorized", "a valid bearer token is required")
            failure.headers = [.wwwAuthenticate: #"Bearer realm="exchanger""#]
            throw failure
        }
    }

    private func submit(_ request: Request) async throws -> (Response, String?) {
        guard let contentType = request.headers[.contentType], Self.isJSON(contentType) else {
            throw APIFailure(.unsupportedMediaType, "unsupportedMediaType", "the body must be application/json")
        }
        let limit = service.settings.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw Self.tooLarge(limit)
        }
        var body = Data()
        for try await chunk in request.body {
            guard body.count + chunk.readableBytes <= limit else { throw Self.tooLarge(limit) }
            body.append(contentsOf: chunk.readableBytesView)
        }
        let (record, created) = try await service.submit(body: body, idempotencyKey: Self.idempotencyKeyHeader.flatMap { request.headers[$0] })
        struct Accepted: Encodable {
            var jobId: String
            var state: String
            var created: Bool
        }
        var response = JSONBody.response(.accepted, Accepted(jobId: record.jobID, state: record.state.name, created: created))
        response.headers[.location] = "/exchanges/\(record.jobID)"
        return (response, record.jobID)
    }

    private func get(_ jobID: String?) async throws -> Response {
        guard let jobID, let view = try await service.exchange(jobID) else {
            throw APIFailure(.notFound, "notFound", "no exchange has job id '\(jobID ?? "")'")
        }
        return JSONBody.response(.ok, view)
    }

    private func list(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        var state: ExchangeState?
        if let text = query.get("state") {
            guard let parsed = Self.state(text) else {
                throw APIFailure(.badRequest, "invalidRequest", "unknown state '\(text.prefix(40))'", field: "state")
            }
            state = parsed
        }
        var caseID: Int64?
        if let text = query.get("caseId") {
            guard let value = Int64(text), value > 0 else {
                throw APIFailure(.badRequest, "invalidRequest", "must be a positive integer", field: "caseId")
            }
            caseID = value
        }
        var limit: Int?
        if let text = query.get("limit") {
            guard let value = Int(text), value >= 1, value <= service.settings.listLimit else {
                throw APIFailure(.badRequest, "invalidRequest", "must be an integer in 1…\(service.settings.listLimit)", field: "limit")
            }
            limit = value
        }
        let exchanges = try await service.list(state: state, caseID: caseID, limit: limit)
        return JSONBody.response(.ok, ["exchanges": exchanges])
    }

    private func cancel(_ jobID: String?) async throws -> Response {
        guard let jobID else { throw APIFailure(.notFound, "notFound", "no exchange has this job id") }
        let record = try await service.cancel(jobID)
        struct Cancelled: Encodable {
            var jobId: String
            var state: String
            var teardownTarget: String?
        }
        return JSONBody.response(.accepted, Cancelled(jobId: record.jobID, state: record.state.name, teardownTarget: record.state.teardownTarget?.rawValue))
    }

    private func retry(_ jobID: String?) async throws -> (Response, String?) {
        guard let jobID else { throw APIFailure(.notFound, "notFound", "no exchange has this job id") }
        let (record, created) = try await service.retry(jobID)
        struct Accepted: Encodable {
            var jobId: String
            var state: String
            var created: Bool
            var retryOf: String
            var documents: Int
        }
        var documents = 0
        if case .documents(let ids) = record.request.selection { documents = ids.count }
        var response = JSONBody.response(
            .accepted, Accepted(jobId: record.jobID, state: record.state.name, created: created, retryOf: jobID, documents: documents))
        response.headers[.location] = "/exchanges/\(record.jobID)"
        return (response, record.jobID)
    }

    /// A state by its name; `TEARING_DOWN` for either teardown target is not a filter the store
    /// offers, so `TEARING_DOWN_FAILED` / `TEARING_DOWN_CANCELLED` name them.
    static func state(_ text: String) -> ExchangeState? {
        switch text.uppercased() {
        case "TEARING_DOWN_FAILED": return .tearingDown(.failed)
        case "TEARING_DOWN_CANCELLED": return .tearingDown(.cancelled)
        case let name: return ExchangeState(name: name, teardownTarget: nil)
        }
    }

    static func isJSON(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return media == "application/json" || (media.hasPrefix("application/") && media.hasSuffix("+json"))
    }

    static func tooLarge(_ limit: Int) -> APIFailure {
        APIFailure(.contentTooLarge, "payloadTooLarge", "the body exceeds \(limit) bytes")
    }
}

extension Duration {
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
