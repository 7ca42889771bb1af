import Crypto
import Foundation

/// A streaming SHA-256 for the engine's content digests, on swift-crypto (BoringSSL, with the
/// CPU's SHA extensions where it has them).
///
/// The engine records the digest of every PDF and annotation set it keeps, so a re-ingest of the
/// same content is recognised without comparing bytes.
struct SHA256Hasher: Sendable {
    private var hasher = Crypto.SHA256()
    private var length: Int64 = 0

    init() {}

    /// The number of bytes hashed so far.
    var count: Int64 { length }

    mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        length += Int64(bytes.count)
        if let done = bytes.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) {
            return done
        }
        hasher.update(data: Array(bytes))
    }

    /// The digest as 64 lower-case hex digits.
    func finalizeHex() -> String {
        Self.hex(digest: hasher.finalize())
    }

    /// The hex digest of `data`.
    static func hex<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    private static let digits = Array("0123456789abcdef".utf8)

    private static func hex(digest: SHA256.Digest) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
