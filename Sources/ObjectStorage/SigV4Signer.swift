import Crypto
import Foundation

/// AWS Signature Version 4 header signing, as a pure value: no clock, no I/O.
///
/// Give it the request as it will go on the wire (method, the already URI-encoded path, the raw
/// query parameters, the headers including `host` and `x-amz-date`, the payload hash) and it
/// returns the canonical request, the string to sign, the signature and the `Authorization`
/// header. S3 signs the path exactly as sent (no second encoding, no normalisation), which is
/// what this signer does for every service; callers encode the path once with ``uriEncode(_:encodeSlash:)``.
public struct SigV4Signer: Sendable, Hashable {
    /// Access key, secret and optional session token.
    public struct Credentials: Sendable, Hashable, CustomStringConvertible {
        public var accessKeyID: String
        public var secretAccessKey: String
        /// Sent as `x-amz-security-token` (temporary credentials).
        public var sessionToken: String?

        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }

        /// Never prints the secret.
        public var description: String { "Credentials(accessKeyID: \(accessKeyID), secret: <redacted>)" }
    }

    /// The outcome of signing one request.
    public struct Signature: Sendable, Hashable {
        /// The canonical request (task 1 of the SigV4 algorithm).
        public var canonicalRequest: String
        /// The string to sign (task 2).
        public var stringToSign: String
        /// The hex HMAC-SHA256 signature (task 3).
        public var signature: String
        /// `host;x-amz-date;…`: the signed header names, lowercase and sorted.
        public var signedHeaders: String
        /// The `Authorization` header value.
        public var authorization: String
    }

    /// SHA-256 of the empty string, the payload hash of a request without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// The payload hash S3 accepts for an unsigned (streamed) body.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    public var credentials: Credentials
    public var region: String
    public var service: String

    public init(credentials: Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Signs a request.
    /// - Parameters:
    ///   - method: `GET`, `PUT`, …
    ///   - encodedPath: the request path exactly as sent, already URI-encoded (`/bucket/a%20b`).
    ///   - query: the query parameters, not encoded; order does not matter.
    ///   - headers: every header to sign, names in any case, including `host` and `x-amz-date`
    ///     (and `x-amz-content-sha256` / `x-amz-security-token` for S3); repeated names are joined
    ///     with `,` in the order given.
    ///   - payloadHash: hex SHA-256 of the body, or ``unsignedPayload``.
    ///   - date: the signing time; must be the instant written in `x-amz-date`.
    public func sign(
        method: String, encodedPath: String, query: [(String, String)], headers: [(String, String)], payloadHash: String, date: Date
    ) -> Signature {
        let stamp = Self.timestamp(date)
        let day = String(stamp.prefix(8))

        // Canonical headers: lowercase names, trimmed values with inner runs of spaces collapsed,
        // sorted by name, repeated names joined with ',' in the order given.
        var grouped: [String: [String]] = [:]
        for (name, value) in headers {
            grouped[name.lowercased(), default: []].append(Self.normalizeHeaderValue(value))
        }
        let names = grouped.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let canonicalHeaders = names.map { "\($0):\(grouped[$0, default: []].joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        let canonicalRequest = [
            method.uppercased(),
            encodedPath.isEmpty ? "/" : encodedPath,
            Self.canonicalQuery(query),
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")

        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", stamp, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        let signingKey = signingKey(day: day)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey))
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return Signature(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature, signedHeaders: signedHeaders,
            authorization: authorization)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    private func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    // MARK: - Encoding helpers

    /// SigV4 URI encoding: unreserved characters (`A-Z a-z 0-9 - _ . ~`) kept, every other UTF-8
    /// byte as `%XX` (uppercase hex); `/` kept unless `encodeSlash`.
    public static func uriEncode(_ string: String, encodeSlash: Bool = true) -> String {
        var result = ""
        result.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where !encodeSlash:
                result.append("/")
            default:
                result.append("%")
                result.append(hexDigits[Int(byte >> 4)])
                result.append(hexDigits[Int(byte & 0x0f)])
            }
        }
        return result
    }

    /// The canonical query string: each name and value URI-encoded (`/` too), pairs sorted by
    /// encoded name then encoded value (byte order), joined with `&`.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0), uriEncode($0.1)) }
            .sorted { lhs, rhs in
                if lhs.0 != rhs.0 { return lhs.0.utf8.lexicographicallyPrecedes(rhs.0.utf8) }
                return lhs.1.utf8.lexicographicallyPrecedes(rhs.1.utf8)
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// `20150830T123600Z`: the `x-amz-date` form of `date` (UTC).
    public static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    /// Lowercase hex of a digest or MAC.
    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        var result = ""
        for byte in bytes {
            result.append(hexDigitsLower[Int(byte >> 4)])
            result.append(hexDigitsLower[Int(byte & 0x0f)])
        }
        return result
    }

    /// Lowercase hex SHA-256 of `data`.
    public static func sha256Hex(_ data: some DataProtocol) -> String { hex(SHA256.hash(data: data)) }

    private static let hexDigits: [Character] = Array("0123456789ABCDEF")
    private static let hexDigitsLower: [Character] = Array("0123456789abcdef")

    private static func normalizeHeaderValue(_ value: String) -> String {
        var result = ""
        var pendingSpace = false
        for character in value.trimmingCharacters(in: .whitespaces) {
            if character == " " || character == "\t" {
                pendingSpace = true
                continue
            }
            if pendingSpace {
                result.append(" ")
                pendingSpace = false
            }
            result.append(character)
        }
        return result
    }
}
