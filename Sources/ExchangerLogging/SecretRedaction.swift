/// Masks the secrets a connection string can carry, for logs and printed output.
///
/// - `scheme://user:password@host/…` → `scheme://user:***@host/…`;
/// - query parameters that name a secret (`password`, `sslpassword`, `secret`, `token`, `key`, …,
///   any case) keep their name and lose their value: `?password=***`;
/// - libpq's `key=value` form (`host=db password='s e c' dbname=x`) likewise: `password=***`.
///
/// Everything else is left as it is, so the result still says where the connection goes.
public enum SecretRedaction {
    /// Parameter names whose values are secrets (compared without case; `…password`, `…secret`,
    /// `…token` and `…key` suffixes count too, as in `sslpassword` or `aws_secret_key`).
    static let secretNames: Set<String> = ["password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey", "api_key", "credentials"]

    static func isSecret(_ name: Substring) -> Bool {
        let lower = name.lowercased()
        return secretNames.contains(lower) || ["password", "secret", "token", "key"].contains { lower.hasSuffix($0) }
    }

    /// `text` with every secret replaced by `***`.
    public static func redact(_ text: String) -> String {
        var result = text
        // User info of a URL.
        if let scheme = result.range(of: "://") {
            let rest = result[scheme.upperBound...]
            let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
            if let at = rest[..<end].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
                result = String(result[..<result.index(after: colon)]) + "***" + String(result[at...])
            }
        }
        // `name=value` pairs, in a query (`&`-separated) or libpq's space-separated form.
        var output = ""
        var index = result.startIndex
        while index < result.endIndex {
            guard let equals = result[index...].firstIndex(of: "=") else {
                output += result[index...]
                break
            }
            var nameStart = equals
            while nameStart > result.startIndex {
                let previous = result.index(before: nameStart)
                let character = result[previous]
                guard character.isLetter || character.isNumber || character == "_" || character == "-" || character == "." else { break }
                nameStart = previous
            }
            output += result[index..<equals]
            output += "="
            var valueEnd = result.index(after: equals)
            if valueEnd < result.endIndex, result[valueEnd] == "'" {
                // A quoted libpq value, with \' escapes.
                valueEnd = result.index(after: valueEnd)
                while valueEnd < result.endIndex, result[valueEnd] != "'" {
                    if result[valueEnd] == "\\", result.index(after: valueEnd) < result.endIndex { valueEnd = result.index(after: valueEnd) }
                    valueEnd = result.index(after: valueEnd)
                }
                if valueEnd < result.endIndex { valueEnd = result.index(after: valueEnd) }
            } else {
                while valueEnd < result.endIndex, !" &;#\t\n".contains(result[valueEnd]) { valueEnd = result.index(after: valueEnd) }
            }
            let value = result[result.index(after: equals)..<valueEnd]
            output += isSecret(result[nameStart..<equals]) && !value.isEmpty ? "***" : String(value)
            index = valueEnd
        }
        return output
    }
}
