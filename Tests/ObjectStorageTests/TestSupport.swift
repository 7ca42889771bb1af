import ExchangerTestSupport
import Foundation
import ObjectStorage
import ProcessSupport
import Testing

/// Keys that trip up encoders: spaces, `+`, `%`, `=`, `&`, `~`, XML specials, unicode, a 900-byte name.
enum AwkwardKeys {
    static let longName = String(repeating: "n", count: 896) + ".pdf"  // 900 bytes, one segment

    /// For S3: every one is one object.
    static let s3: [String] = [
        "plain/file.pdf",
        "with space/a b.pdf",
        "plus+sign/a+b.pdf",
        "percent/100%25 and 100%.txt",
        "equals=and&amp/a=b&c=d.txt",
        "tilde~/x~y.txt",
        "unicode/ünïcødé/文件 📄.pdf",
        "xml<&>\"'/quote's.txt",
        "query?hash#/semi;colon,comma@at!$()*.txt",
        "case_1/documents/7/" + longName,
    ]

    /// For the file store: a directory entry is at most 255 bytes, so the long key is 900 bytes in segments.
    static let file: [String] = s3.dropLast() + [
        "long/" + ["a", "b", "c", "d"].map { String(repeating: $0, count: 200) + "/" }.joined() + String(repeating: "e", count: 87) + ".pdf"
    ]
}

/// A fresh temp directory, removed afterwards.
func withTempDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("exch-os-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Runs a program found on PATH; returns (exit status, stdout).
@discardableResult
func run(_ program: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
    let child = try ChildProcess(executable: "/usr/bin/env", arguments: [program] + arguments, environment: environment)
    let output = try await child.readAll()
    let status = try await child.wait()
    return (status, output)
}

/// Collects a listing.
func collect(_ stream: AsyncThrowingStream<ObjectInfo, any Error>) async throws -> [ObjectInfo] {
    var result: [ObjectInfo] = []
    for try await info in stream { result.append(info) }
    return result
}

/// Collects a byte stream.
func collect(_ stream: ObjectByteStream) async throws -> Data {
    var data = Data()
    for try await chunk in stream { data.append(contentsOf: chunk) }
    return data
}

/// Deterministic pseudo-random bytes.
func testBytes(_ count: Int, seed: UInt64 = 42) -> Data {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    for index in 0..<count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        bytes[index] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return Data(bytes)
}

/// Asserts that `body` throws an ``ObjectStorageError`` with `code`.
func expectStorageError<T>(
    _ code: ObjectStorageError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        Issue.record("expected an ObjectStorageError \(code), got success", sourceLocation: sourceLocation)
    } catch let error as ObjectStorageError {
        #expect(error.code == code, "expected \(code), got \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected an ObjectStorageError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}
