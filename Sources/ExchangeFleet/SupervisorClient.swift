import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A client of a running supervisor's control routes (`exchanger ctl`): the state of its global
/// programs, start / stop / restart, and their recent output.
public struct SupervisorClient: Sendable {
    /// One process of a program, as the supervisor reports it.
    public struct Process: Sendable, Hashable, Codable {
        /// The program's name.
        public var program: String
        /// The deployment of a per-exchange process; empty for a global program's.
        public var deploymentID: String?
        /// The instance number.
        public var instance: Int
        /// `RUNNING`, `STARTING`, `BACKOFF`, `STOPPING`, `STOPPED`, `EXITED` or `FAILED`.
        public var state: String
        /// The process id while one runs.
        public var pid: Int32?
        /// Restarts since the supervisor started.
        public var restarts: Int
        /// The last exit status.
        public var lastExitStatus: Int32?
    }

    /// A piece of a program's recent output.
    public struct Log: Sendable, Hashable, Codable {
        /// The program.
        public var program: String
        /// Offset of the first byte of ``text``.
        public var start: Int64
        /// Offset after the last byte: the next read's `from`.
        public var end: Int64
        /// Whether output between the asked offset and ``start`` was no longer kept.
        public var skipped: Bool
        /// The lines.
        public var text: String
    }

    /// `http://host:port` of the supervisor's `http_port`.
    public var baseURL: String
    /// The bearer token (`EXCHANGER_SUPERVISOR_CONTROL_TOKEN` on the supervisor), if it needs one.
    public var token: String?
    /// How long one request may take.
    public var requestTimeout: Duration = .seconds(30)

    /// A client of the supervisor at `baseURL`.
    public init(baseURL: String, token: String?) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.token = token
    }

    /// Every process of every program (`GET /status`).
    public func status() async throws -> [Process] {
        try decode([Process].self, try await send("/status", method: .GET, authenticated: false))
    }

    /// The processes of one global program.
    public func status(program: String) async throws -> [Process] {
        try decode([Process].self, try await send("/programs/" + Self.escape(program), method: .GET))
    }

    /// Starts, stops or restarts a global program; its processes afterwards.
    public func control(_ verb: String, program: String) async throws -> [Process] {
        try decode([Process].self, try await send("/programs/" + Self.escape(program) + "/" + verb, method: .POST))
    }

    /// The program's output from `from` (or its last `last` bytes).
    public func log(program: String, from: Int64?, last: Int) async throws -> Log {
        var path = "/programs/" + Self.escape(program) + "/log?last=\(last)"
        if let from { path += "&from=\(from)" }
        return try decode(Log.self, try await send(path, method: .GET))
    }

    private func send(_ path: String, method: HTTPMethod, authenticated: Bool = true) async throws -> String {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if authenticated, let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(requestTimeout.components.seconds * 1_000_000_000))
        } catch {
            throw FleetError(.supervisor, "the supervisor at \(baseURL) does not answer (\(error)); is its http_port right?")
        }
        let body = String(buffer: try await response.body.collect(upTo: 64 << 20))
        guard response.status == .ok else {
            let message = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
                .flatMap { ($0["error"] as? [String: Any])?["message"] as? String } ?? body.trimmingCharacters(in: .whitespacesAndNewlines)
            throw FleetError(.http, "the supervisor answered \(response.status.code): \(message)")
        }
        return body
    }

    private func decode<T: Decodable>(_ type: T.Type, _ body: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(body.utf8))
        } catch {
            throw FleetError(.invalidRequest, "the supervisor's answer cannot be read: \(error)")
        }
    }

    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? segment
    }
}
