import ConcurrencySupport
import Foundation

/// The Nutrient Document Engine API token of a process, loaded once and shared by every request.
///
/// The reference's pre-uploader kept its token in an instance variable filled by an `async init`,
/// and two messages arriving together raced on it (review item 12). Here one actor owns it:
/// concurrent callers of ``token()`` wait for the same single load, and ``invalidate(_:)`` after a
/// 401 makes the next caller load it again (a rotated secret file).
public actor NutrientTokenCache {
    /// `EXCHANGER_NUTRIENT_API_TOKEN`: the API token (`Authorization: Token token="…"`).
    public static let tokenVariable = "EXCHANGER_NUTRIENT_API_TOKEN"
    /// `EXCHANGER_NUTRIENT_API_TOKEN_FILE`: a file holding the token (a container secret), used when the variable is unset.
    public static let tokenFileVariable = "EXCHANGER_NUTRIENT_API_TOKEN_FILE"

    private enum State {
        case empty
        case loading(Task<String, any Error>)
        case loaded(String)
    }

    private var state = State.empty
    private let load: @Sendable () async throws -> String
    /// How many times the token was loaded (for tests and metrics).
    public private(set) var loads = 0

    /// A cache that loads with `load`.
    public init(load: @escaping @Sendable () async throws -> String) {
        self.load = load
    }

    /// A cache reading `EXCHANGER_NUTRIENT_API_TOKEN`, else the file `EXCHANGER_NUTRIENT_API_TOKEN_FILE` names.
    public init(environment: [String: String]) {
        self.init { try Self.token(from: environment) }
    }

    private static let processCache = LockedProcessCache()

    /// The process's one cache for the credential `environment` names (created on first use): every
    /// engine of a process with the same `EXCHANGER_NUTRIENT_API_TOKEN` / `…_FILE` shares one cache;
    /// an environment naming other credentials (a second engine, a test) gets its own.
    public static func shared(environment: [String: String]) -> NutrientTokenCache {
        let source = CredentialSource(token: environment[tokenVariable] ?? "", file: environment[tokenFileVariable] ?? "")
        return processCache.get(source) { NutrientTokenCache(environment: environment) }
    }

    /// The token, loading it at most once however many callers ask at the same time.
    public func token() async throws -> String {
        switch state {
        case .loaded(let token):
            return token
        case .loading(let task):
            return try await task.value
        case .empty:
            let load = self.load
            let task = Task { try await load() }
            state = .loading(task)
            loads += 1
            do {
                let token = try await task.value
                state = .loaded(token)
                return token
            } catch {
                state = .empty
                throw error
            }
        }
    }

    /// Forgets `token` (the engine refused it) so the next ``token()`` loads again; a newer token is kept.
    public func invalidate(_ token: String) {
        if case .loaded(let current) = state, current == token { state = .empty }
    }

    /// Reads the token from the environment; throws ``DocumentEngineError/Code/transient`` (an
    /// operator can fix it) when none is configured or the file cannot be read.
    static func token(from environment: [String: String]) throws -> String {
        if let token = environment[tokenVariable]?.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty { return token }
        if let path = environment[tokenFileVariable], !path.isEmpty {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw DocumentEngineError(.transient, "cannot read \(tokenFileVariable) '\(path)': \(error.localizedDescription)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw DocumentEngineError(.transient, "\(tokenFileVariable) '\(path)' is empty") }
            return token
        }
        throw DocumentEngineError(.transient, "no Nutrient API token: set \(tokenVariable) or \(tokenFileVariable)")
    }
}

/// The process-wide token cache, created once.
/// Where a token comes from: the variable's value and the file's path.
private struct CredentialSource: Hashable, Sendable {
    var token: String
    var file: String
}

private final class LockedProcessCache: Sendable {
    private let box = LockedBox<[CredentialSource: NutrientTokenCache]>([:])

    func get(_ source: CredentialSource, _ make: () -> NutrientTokenCache) -> NutrientTokenCache {
        box.withLock { caches in
            if let cache = caches[source] { return cache }
            let made = make()
            caches[source] = made
            return made
        }
    }
}
