import Crypto
import Foundation

/// The bearer tokens the API accepts. Only their SHA-256 digests are kept; a presented token is
/// hashed and compared with every digest by a constant-time byte loop (equal lengths, no early
/// exit), so neither the position of a mismatch nor which token matched shows in the timing.
public struct APITokens: Sendable {
    private let digests: [[UInt8]]

    /// Tokens given in code (empty strings and surrounding whitespace are dropped).
    public init(_ tokens: [String]) {
        digests = tokens.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            .map { Array(SHA256.hash(data: Data($0.utf8))) }
    }

    /// The tokens of `EXCHANGER_API_TOKENS` (comma-separated) and of the file named by
    /// `EXCHANGER_API_TOKENS_FILE` (one per line; blank lines and lines starting with `#` are
    /// ignored); both may be set.
    /// - Throws: ``OrchestratorServiceError/Code/invalidSetting`` when the file cannot be read.
    public init(environment: [String: String]) throws(OrchestratorServiceError) {
        var tokens: [String] = []
        if let list = environment["EXCHANGER_API_TOKENS"] {
            tokens += list.split(separator: ",").map(String.init)
        }
        if let path = environment["EXCHANGER_API_TOKENS_FILE"], !path.isEmpty {
            let contents: String
            do {
                contents = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw OrchestratorServiceError(.invalidSetting, "cannot read EXCHANGER_API_TOKENS_FILE '\(path)': \(error.localizedDescription)")
            }
            tokens += contents.split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        }
        self.init(tokens)
    }

    /// No token is configured.
    public var isEmpty: Bool { digests.isEmpty }

    /// How many tokens are configured.
    public var count: Int { digests.count }

    /// Whether `token` is one of the configured tokens (constant time in the token's content).
    public func accepts(_ token: String) -> Bool {
        let presented = Array(SHA256.hash(data: Data(token.utf8)))
        var matched: UInt8 = 0
        for digest in digests {
            var difference: UInt8 = 0
            for index in 0..<presented.count { difference |= presented[index] ^ digest[index] }
            matched |= difference == 0 ? 1 : 0
        }
        return matched == 1
    }

    /// The token of an `Authorization: Bearer …` header value, nil for anything else.
    public static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
