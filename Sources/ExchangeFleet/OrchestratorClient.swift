import AsyncHTTPClient
import DatabaseSupport
import Foundation
import NIOCore
import NIOHTTP1

/// An exchange as `GET /exchanges/{jobId}` shows it (the fields a client needs).
public struct ExchangeStatus: Sendable, Hashable, Codable {
    /// Where the exchange is on its way.
    public struct Step: Sendable, Hashable, Codable {
        /// Position on the happy path (nil off it).
        public var number: Int?
        /// Steps on the happy path.
        public var of: Int
        /// What the state means.
        public var description: String
    }

    /// Document counts.
    public struct Documents: Sendable, Hashable, Codable {
        /// Documents the payload covers (nil until known).
        public var total: Int?
        /// Documents copied.
        public var copied: Int
        /// Documents missing in the source.
        public var notFound: Int
        /// Documents a stage gave up on.
        public var failed: Int
        /// Documents left out because an earlier exchange delivered them (absent from older servers).
        public var skipped: Int?
    }

    /// Once the exchange ended: the destination ids of the documents that did not arrive.
    public struct LeftBehind: Sendable, Hashable, Codable {
        /// Documents a stage gave up on.
        public var failed: [Int64]
        /// Documents whose files were not found.
        public var notFound: [Int64]
        /// A list was cut at the server's limit.
        public var truncated: Bool
    }

    /// One stage's counts.
    public struct Stage: Sendable, Hashable, Codable {
        /// Documents the stage finished.
        public var done: Int
        /// Documents the stage gave up on.
        public var failed: Int
        /// The exchange's document count (nil until known).
        public var total: Int?
    }

    /// The exchange's id.
    public var jobId: String
    /// The state's name.
    public var state: String
    /// `FAILED` or `CANCELLED` while tearing down.
    public var teardownTarget: String?
    /// Where it is.
    public var step: Step
    /// Document counts.
    public var documents: Documents
    /// Per stage program.
    public var stages: [String: Stage]
    /// Payload messages sent so far.
    public var payloadSent: Int
    /// Why it failed or was cancelled.
    public var error: String?
    /// Once it ended: the documents that did not arrive.
    public var leftBehind: LeftBehind?

    /// Whether the state is final (FINISHED, FAILED or CANCELLED).
    public var isFinal: Bool { ["FINISHED", "FAILED", "CANCELLED"].contains(state) }
}

/// A client of the orchestrator's HTTP API (`exchanger submit | status | watch | cancel`, `exchanger run`).
public struct OrchestratorClient: Sendable {
    /// The API's base URL, e.g. `http://127.0.0.1:8080`.
    public var baseURL: String
    /// The bearer token.
    public var token: String?
    /// Timeout of one request (default 30 s).
    public var requestTimeout: Duration = .seconds(30)
    /// How long a call keeps retrying while the orchestrator is unreachable or answers 502, 503 or
    /// 504 (default 120 s, `EXCHANGER_CLIENT_RETRY_SECONDS`); zero: no retries.
    public var retryWindow: Duration = Self.defaultRetryWindow
    /// The first wait between retries, doubled each time up to ``maxRetryDelay`` (default 250 ms);
    /// a `Retry-After` header of the answer replaces it.
    public var initialRetryDelay: Duration = .milliseconds(250)
    /// The longest wait between retries (default 5 s).
    public var maxRetryDelay: Duration = .seconds(5)

    /// The default of ``retryWindow``: 120 s.
    public static let defaultRetryWindow: Duration = .seconds(120)

    /// ``retryWindow`` from `EXCHANGER_CLIENT_RETRY_SECONDS` (seconds, 0…86400), nil when unset.
    /// - Throws: ``FleetError/Code/invalidRequest`` naming the variable when it is malformed.
    public static func retryWindow(environment: [String: String]) throws -> Duration? {
        guard let text = environment["EXCHANGER_CLIENT_RETRY_SECONDS"], !text.isEmpty else { return nil }
        guard let value = Double(text), value.isFinite, (0...86_400).contains(value) else {
            throw FleetError(.invalidRequest, "EXCHANGER_CLIENT_RETRY_SECONDS='\(text)' must be a number of seconds in 0…86400")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// A client of the API at `baseURL` sending `token`.
    public init(baseURL: String, token: String?) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.token = token
    }

    /// The answer to a submission.
    public struct Submitted: Sendable, Hashable, Codable {
        /// The exchange's id.
        public var jobId: String
        /// Its state when answered.
        public var state: String
        /// False when the idempotency key named an exchange submitted before.
        public var created: Bool
    }

    /// `POST /exchanges` with the request's JSON text.
    /// - Throws: ``FleetError`` with `.invalidRequest` naming the field for a refused request.
    public func submit(_ requestJSON: String, idempotencyKey: String? = nil) async throws -> Submitted {
        var request = try makeRequest("/exchanges", method: .POST)
        request.headers.add(name: "Content-Type", value: "application/json")
        if let idempotencyKey { request.headers.add(name: "Idempotency-Key", value: idempotencyKey) }
        request.body = .bytes(ByteBuffer(string: requestJSON))
        let (status, body) = try await execute(request)
        guard status == 202 || status == 200 else { throw failure(status, body) }
        return try decode(Submitted.self, body)
    }

    /// `GET /exchanges/{jobId}`.
    public func status(_ jobID: String) async throws -> ExchangeStatus {
        try decode(ExchangeStatus.self, try await rawStatus(jobID))
    }

    /// `GET /exchanges/{jobId}`, the JSON text as the API sent it.
    public func rawStatus(_ jobID: String) async throws -> String {
        let (status, body) = try await execute(try makeRequest("/exchanges/" + Self.escape(jobID), method: .GET))
        guard status == 200 else { throw failure(status, body) }
        return body
    }

    /// `GET /exchanges` with optional filters, the JSON text as the API sent it.
    public func list(state: String? = nil, caseID: Int64? = nil, limit: Int? = nil) async throws -> String {
        var query: [String] = []
        if let state { query.append("state=" + Self.escape(state)) }
        if let caseID { query.append("caseId=\(caseID)") }
        if let limit { query.append("limit=\(limit)") }
        let path = "/exchanges" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let (status, body) = try await execute(try makeRequest(path, method: .GET))
        guard status == 200 else { throw failure(status, body) }
        return body
    }

    /// The answer to a cancellation.
    public struct Cancelled: Sendable, Hashable, Codable {
        /// The exchange's id.
        public var jobId: String
        /// Its state after the request (`TEARING_DOWN`, or final when it had already ended).
        public var state: String
        /// `CANCELLED` (or `FAILED`) while tearing down.
        public var teardownTarget: String?
    }

    /// `DELETE /exchanges/{jobId}`.
    public func cancel(_ jobID: String) async throws -> Cancelled {
        let (status, body) = try await execute(try makeRequest("/exchanges/" + Self.escape(jobID), method: .DELETE))
        guard status == 200 || status == 202 else { throw failure(status, body) }
        return try decode(Cancelled.self, body)
    }

    /// The answer to `POST /exchanges/{jobId}/retry`.
    public struct Retried: Sendable, Hashable, Codable {
        /// The retry's job id.
        public var jobId: String
        /// Its state when answered.
        public var state: String
        /// False when the same documents were retried before (the earlier retry is returned).
        public var created: Bool
        /// The exchange retried.
        public var retryOf: String
        /// The documents the retry selects.
        public var documents: Int
    }

    /// `POST /exchanges/{jobId}/retry`: a new exchange for the documents `jobID` left behind.
    public func retry(_ jobID: String) async throws -> Retried {
        let (status, body) = try await execute(try makeRequest("/exchanges/" + Self.escape(jobID) + "/retry", method: .POST))
        guard status == 200 || status == 202 else { throw failure(status, body) }
        return try decode(Retried.self, body)
    }

    /// Whether `/readyz` answers 200.
    public func isReady() async -> Bool {
        guard let request = try? makeRequest("/readyz", method: .GET, authenticated: false) else { return false }
        return (try? await execute(request, timeout: .seconds(2), retrying: false).0) == 200
    }

    /// Waits until `/readyz` answers 200, checking every 100 ms.
    /// - Throws: ``FleetError/Code/orchestratorUnavailable`` after `timeout`.
    public func waitUntilReady(timeout: Duration, stillStarting: @Sendable () -> Bool = { true }) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await isReady() { return }
            guard stillStarting() else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw FleetError(.orchestratorUnavailable, "the orchestrator at \(baseURL) did not become ready")
    }

    /// Polls the exchange every `interval` and hands each status to `update`, until it is final.
    /// - Throws: ``FleetError/Code/timeout`` after `timeout`.
    public func watch(
        _ jobID: String, interval: Duration = .milliseconds(250), timeout: Duration,
        update: (ExchangeStatus) throws -> Void
    ) async throws -> ExchangeStatus {
        let deadline = ContinuousClock.now + timeout
        while true {
            // Each status call retries for ``retryWindow`` while the orchestrator (or its database)
            // is unavailable: a crash, a supervisor restart, a PostgreSQL restart.
            let current = try await status(jobID)
            try update(current)
            if current.isFinal { return current }
            guard ContinuousClock.now < deadline else {
                throw FleetError(.timeout, "exchange \(jobID) did not end within \(timeout)")
            }
            try await Task.sleep(for: interval)
        }
    }

    // MARK: Plumbing

    private func makeRequest(_ path: String, method: HTTPMethod, authenticated: Bool = true) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if authenticated, let token { request.headers.add(name: "Authorization", value: "Bearer " + token) }
        return request
    }

    /// One request, retried with exponential backoff (honouring `Retry-After`) while the
    /// orchestrator cannot be reached or answers 502, 503 or 504, for up to ``retryWindow``.
    private func execute(_ request: HTTPClientRequest, timeout: Duration? = nil, retrying: Bool = true) async throws -> (Int, String) {
        let clock = ContinuousClock()
        let deadline = clock.now + (retrying ? retryWindow : .zero)
        var delay = initialRetryDelay
        var attempts = 0
        while true {
            attempts += 1
            let outcome: (status: Int, body: String, retryAfter: Duration?)
            let lastProblem: String
            do {
                outcome = try await executeOnce(request, timeout: timeout)
                guard [502, 503, 504].contains(outcome.status) else { return (outcome.status, outcome.body) }
                lastProblem = "HTTP \(outcome.status): \(outcome.body.prefix(300))"
            } catch let error as FleetError where error.code == .orchestratorUnavailable {
                outcome = (0, "", nil)
                lastProblem = error.message
            }
            let remaining = deadline - clock.now
            guard remaining > .zero else {
                if attempts == 1 {
                    if outcome.status != 0 { return (outcome.status, outcome.body) }
                    throw FleetError(.orchestratorUnavailable, lastProblem)
                }
                throw FleetError(
                    .orchestratorUnavailable,
                    "the orchestrator at \(baseURL) was unavailable for \(retryWindow) (\(attempts) attempts of \(request.method) \(request.url)); last: \(lastProblem)")
            }
            let wait = min(outcome.retryAfter ?? delay, remaining)
            try await Task.sleep(for: wait)
            delay = min(delay * 2, maxRetryDelay)
        }
    }

    private func executeOnce(_ request: HTTPClientRequest, timeout: Duration?) async throws -> (status: Int, body: String, retryAfter: Duration?) {
        let limit = timeout ?? requestTimeout
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(limit.milliseconds))
            let body = try await response.body.collect(upTo: 16 << 20)
            let retryAfter = response.headers["Retry-After"].first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                .map { Duration.seconds(max(0, $0)) }
            return (Int(response.status.code), String(buffer: body), retryAfter)
        } catch let error as HTTPClientError {
            throw FleetError(.orchestratorUnavailable, "\(request.method) \(request.url): \(error)")
        } catch let error as ChannelError {
            throw FleetError(.orchestratorUnavailable, "\(request.method) \(request.url): \(error)")
        } catch let error as IOError {
            throw FleetError(.orchestratorUnavailable, "\(request.method) \(request.url): \(error)")
        }
    }

    private struct ErrorBody: Decodable {
        struct Detail: Decodable {
            var code: String
            var message: String
            var field: String?
        }
        var error: Detail
    }

    private func failure(_ status: Int, _ body: String) -> FleetError {
        let detail = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.utf8)).error
        let message = detail.map { ($0.field.map { "\($0): " } ?? "") + $0.message } ?? "HTTP \(status): \(body.prefix(500))"
        switch status {
        case 401 where token?.isEmpty ?? true:
            return FleetError(
                .unauthorized,
                "no API token was sent and the orchestrator requires one (401): set EXCHANGER_API_TOKEN (or EXCHANGER_API_TOKEN_FILE, "
                    + "or pass --token-file) to one of the server's EXCHANGER_API_TOKENS")
        case 401: return FleetError(.unauthorized, "the orchestrator refused the token (401): \(message)")
        case 404: return FleetError(.notFound, message)
        case 400, 413, 415, 422: return FleetError(.invalidRequest, message)
        case 503: return FleetError(.orchestratorUnavailable, message)
        default: return FleetError(.http, "HTTP \(status): \(message)")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ body: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.utf8))
        } catch {
            throw FleetError(.http, "unexpected answer from the orchestrator: \(error); body: \(body.prefix(500))")
        }
    }

    private static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?&="))) ?? text
    }
}
