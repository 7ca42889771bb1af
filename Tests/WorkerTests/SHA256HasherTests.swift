import Foundation
import Testing
@testable import DocumentEngine

/// The engine's content digest: FIPS 180-4 test vectors, and the same digest however the bytes
/// arrive.
@Suite("SHA256Hasher")
struct SHA256HasherTests {
    @Test("FIPS 180-4 vectors", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func vectors(input: String, expected: String) {
        #expect(SHA256Hasher.hex(Array(input.utf8)) == expected)
        #expect(SHA256Hasher.hex(Data(input.utf8)) == expected)
    }

    @Test("a million 'a' in uneven pieces, and a non-contiguous collection, give the one-shot digest; count is the bytes seen")
    func streaming() {
        var hasher = SHA256Hasher()
        var left = 1_000_000
        var size = 1
        while left > 0 {
            let piece = min(size, left)
            hasher.update([UInt8](repeating: UInt8(ascii: "a"), count: piece))
            left -= piece
            size = size * 3 % 9_973 + 1
        }
        #expect(hasher.count == 1_000_000)
        #expect(hasher.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let lazy = Array("abc".utf8).lazy.map { $0 }
        var fromLazy = SHA256Hasher()
        fromLazy.update(lazy)
        #expect(fromLazy.finalizeHex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
