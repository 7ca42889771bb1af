import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing

@testable import ObjectStorage

/// A fresh bucket on the moto server `scripts/test` started; the store is shut down afterwards.
func withMotoBucket<T>(
    endpointVariable: String = "EXCHANGER_TEST_S3_ENDPOINT", prefix: String = "", settings: [String: String] = [:],
    credentials: (String, String)? = nil, _ body: (S3ObjectStore, [String: String]) async throws -> T
) async throws -> T {
    let endpoint = try TestEnvironment.required(endpointVariable)
    let bucket = "exch-" + UUID().uuidString.lowercased().prefix(13).replacingOccurrences(of: "-", with: "")
    var environment = [
        "AWS_ACCESS_KEY_ID": credentials?.0 ?? "test", "AWS_SECRET_ACCESS_KEY": credentials?.1 ?? "test", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint, "EXCHANGER_S3_MAX_ATTEMPTS": "3",
    ]
    environment.merge(settings) { $1 }
    let opened = try await ObjectStorage.open("s3://\(bucket)/\(prefix)", environment: environment)
    let store = try #require(opened as? S3ObjectStore)
    do {
        try await store.createBucket()
        let result = try await body(store, environment)
        try await store.shutdown()
        return result
    } catch {
        try? await store.shutdown()
        throw error
    }
}

/// The keys of a bucket, as a second client (the aws CLI) sees them.
func awsListKeys(_ store: S3ObjectStore, _ environment: [String: String]) async throws -> [String] {
    let (status, output) = try await run(
        "aws",
        [
            "s3api", "list-objects-v2", "--endpoint-url", store.configuration.endpoint, "--bucket", store.bucket, "--output", "json",
            "--region", "us-east-1",
        ],
        environment: ["AWS_ACCESS_KEY_ID": environment["AWS_ACCESS_KEY_ID"] ?? "test", "AWS_SECRET_ACCESS_KEY": environment["AWS_SECRET_ACCESS_KEY"] ?? "test"])
    try #require(status == 0, "aws s3api list-objects-v2 failed")
    if output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return [] }
    let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    return (json["Contents"] as? [[String: Any]] ?? []).compactMap { $0["Key"] as? String }
}

@Suite struct S3ObjectStoreTests {
    @Test func everyOperationWithAwkwardKeys() async throws {
        try await withMotoBucket { store, environment in
            let data = testBytes(300_000)
            for raw in AwkwardKeys.s3 {
                let key = try ObjectKey(raw)
                try await store.put(key, data, contentType: "application/pdf")
                let info = try await store.head(key)
                #expect(info.size == Int64(data.count), "\(raw)")
                #expect(info.etag?.isEmpty == false)
                #expect(try await store.get(key) == data, "\(raw)")
                #expect(try await collect(try await store.stream(key)) == data, "\(raw)")
                let copy = try ObjectKey(raw + " copy")
                let copied = try await store.copy(from: key, to: copy)
                #expect(copied.size == Int64(data.count) && copied.key == copy)
                #expect(try await store.get(copy) == data, "\(raw) copy")
            }
            let expected = (AwkwardKeys.s3 + AwkwardKeys.s3.map { $0 + " copy" }).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            #expect(try await collect(store.list(prefix: "")).map(\.key.rawValue) == expected)
            #expect(try await awsListKeys(store, environment).sorted() == expected.sorted(), "each object under exactly its own name")
            for raw in AwkwardKeys.s3 {
                #expect(try await collect(store.list(prefix: raw)).map(\.key.rawValue) == [raw, raw + " copy"], "prefix \(raw)")
            }
            for raw in expected { try await store.delete(try ObjectKey(raw)) }
            #expect(try await collect(store.list(prefix: "")).isEmpty)
            #expect(try await awsListKeys(store, environment).isEmpty)
        }
    }

    @Test func uploadAndDownloadFiles() async throws {
        try await withTempDirectory { directory in
            try await withMotoBucket(prefix: "tenant a") { store, environment in
                let source = directory + "/source.bin"
                let data = testBytes(3 << 20)
                try data.write(to: URL(fileURLWithPath: source))
                let key = try ObjectKey("case_1/documents/2/big file+.bin")
                try await store.upload(file: source, to: key, contentType: "application/octet-stream")
                #expect(try await awsListKeys(store, environment) == ["tenant a/case_1/documents/2/big file+.bin"], "keys are relative to the prefix")
                try await store.download(key, to: directory + "/out/copy.bin")
                #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/out/copy.bin")) == data)
                #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/out") == ["copy.bin"])
                #expect(try await collect(store.list(prefix: "case_1/")).map(\.key.rawValue) == [key.rawValue])
            }
        }
    }

    @Test func quickCopyIsOneRequestAndAsFaithfulAsCopy() async throws {
        try await withMotoBucket { store, _ in
            let source = try ObjectKey("case_1/documents/1/a b+c.pdf")
            let destination = try ObjectKey("case_2/documents/9/a b+c.pdf")
            let bytes = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            try await store.put(source, bytes)
            let size = try await store.quickCopy(from: source, to: destination)
            #expect(size == nil, "S3's CopyObject does not report the size, and no HEAD was spent on it")
            #expect(try await store.get(destination) == bytes)
            // The file store learns the size with the copy and reports it.
            let file = FileObjectStore(directory: NSTemporaryDirectory() + "exch-qc-\(UUID().uuidString)")
            try await file.put(source, bytes)
            #expect(try await file.quickCopy(from: source, to: destination) == Int64(bytes.count))
        }
    }

    @Test func notFoundIsTyped() async throws {
        try await withMotoBucket { store, _ in
            let missing = try ObjectKey("no/such key")
            await expectStorageError(.notFound) { try await store.head(missing) }
            await expectStorageError(.notFound) { try await store.get(missing) }
            await expectStorageError(.notFound) { try await store.stream(missing) }
            await expectStorageError(.notFound) { try await store.copy(from: missing, to: try ObjectKey("x")) }
            await expectStorageError(.notFound) { try await store.quickCopy(from: missing, to: try ObjectKey("x")) }
            await expectStorageError(.notFound) { try await store.download(missing, to: "/tmp/exch-never-\(UUID().uuidString)") }
            #expect(try await !store.exists(missing))
            try await store.delete(missing)  // fine
        }
        // A bucket that does not exist: the store's URL is wrong, not one object missing.
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
        let store = try await ObjectStorage.open(
            "s3://exch-missing-\(UUID().uuidString.prefix(8).lowercased())",
            environment: ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL_S3": endpoint])
        await expectStorageError(.configuration) { try await store.get(try ObjectKey("a")) }
        await expectStorageError(.configuration) { try await collect(store.list(prefix: "")) }
        await expectStorageError(.configuration) { try await store.probe() }
        try await store.shutdown()
    }

    @Test func paginatedList() async throws {
        try await withMotoBucket(settings: ["EXCHANGER_S3_LIST_PAGE_SIZE": "7"]) { store, _ in
            let keys = try (0..<45).map { try ObjectKey(String(format: "page/%03d item+%d.txt", $0, $0)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in keys { group.addTask { try await store.put(key, Data(key.rawValue.utf8)) } }
                try await group.waitForAll()
            }
            try await store.put(try ObjectKey("other/x"), Data())
            let listed = try await collect(store.list(prefix: "page/"))
            #expect(listed.map(\.key) == keys)
            #expect(listed.allSatisfy { $0.size == Int64($0.key.rawValue.utf8.count) })
            // Stopping early is fine.
            var seen = 0
            for try await _ in store.list(prefix: "") {
                seen += 1
                if seen == 10 { break }
            }
            #expect(seen == 10)
        }
    }

    @Test func multipartCopy() async throws {
        try await withMotoBucket(settings: ["EXCHANGER_S3_MULTIPART_COPY_THRESHOLD": String(6 << 20), "EXCHANGER_S3_MULTIPART_PART_SIZE": String(5 << 20)]) {
            store, environment in
            #expect(store.configuration.multipartCopyThreshold == 6 << 20)
            let data = testBytes(12 << 20)
            let source = try ObjectKey("big/source object.bin")
            try await store.put(source, data, contentType: "application/pdf")
            let destination = try ObjectKey("big/copied ü+.bin")
            let info = try await store.copy(from: source, to: destination)
            #expect(info.size == Int64(data.count))
            #expect(info.etag?.hasSuffix("-3") == true, "a multipart ETag of 3 parts, got \(info.etag ?? "nil")")
            #expect(try await store.get(destination) == data)
            #expect(try await awsListKeys(store, environment).sorted() == ["big/copied ü+.bin", "big/source object.bin"])
            // A small object still uses CopyObject.
            let small = try ObjectKey("small")
            try await store.put(small, Data("s".utf8))
            #expect(try await store.copy(from: small, to: try ObjectKey("small copy")).etag?.contains("-") == false)
        }
    }
}

/// moto with signature verification on (INITIAL_NO_AUTH_ACTION_COUNT): our signatures must hold.
@Suite struct SignedS3Tests {
    static func credentials() throws -> (String, String) {
        (try TestEnvironment.required("EXCHANGER_TEST_S3_AUTH_ACCESS_KEY_ID"), try TestEnvironment.required("EXCHANGER_TEST_S3_AUTH_SECRET_ACCESS_KEY"))
    }

    @Test func signedRequestsSucceed() async throws {
        try await withMotoBucket(endpointVariable: "EXCHANGER_TEST_S3_AUTH_ENDPOINT", credentials: try Self.credentials()) { store, _ in
            let keys = try ["plain/file.pdf", "with space/a b.pdf", "tilde~/x~y.txt", "case_1/documents/7/" + AwkwardKeys.longName].map(ObjectKey.init)
            let data = testBytes(100_000)
            for key in keys {
                try await store.put(key, data, contentType: "application/pdf")
                #expect(try await store.head(key).size == Int64(data.count))
                #expect(try await store.get(key) == data)
                let copy = try ObjectKey(key.rawValue + ".copy")
                try await store.copy(from: key, to: copy)
                #expect(try await store.get(copy) == data)
            }
            try await withTempDirectory { directory in
                try data.write(to: URL(fileURLWithPath: directory + "/f"))
                try await store.upload(file: directory + "/f", to: try ObjectKey("uploaded file"), contentType: nil)
            }
            let listed = try await collect(store.list(prefix: ""))
            #expect(listed.count == keys.count * 2 + 1)
            for key in keys { try await store.delete(key) }
        }
    }

    @Test func wrongSecretIsAccessDenied() async throws {
        let (accessKey, _) = try Self.credentials()
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_AUTH_ENDPOINT")
        let store = try await ObjectStorage.open(
            "s3://exch-denied", environment: ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": "wrong-secret", "AWS_ENDPOINT_URL_S3": endpoint])
        await expectStorageError(.accessDenied) { try await store.put(try ObjectKey("a"), Data("x".utf8)) }
        await expectStorageError(.accessDenied) { try await collect(store.list(prefix: "")) }
        try await store.shutdown()
    }
}

/// A scripted fake S3 (python http.server) for answers moto never gives: CopyObject's 200 with an
/// <Error> body, SlowDown, errors that must not be retried.
@Suite struct S3FaultTests {
    static let script = #"""
        import sys, threading
        from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
        counts = {}
        lock = threading.Lock()
        ERROR = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>scripted</Message></Error>'
        OK = b'<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"etag1"</ETag></CopyObjectResult>'
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def answer(self, status, body=b"", headers=()):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers: self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD": self.wfile.write(body)
            def count(self):
                name = self.path.split("?")[0].split("/")[-1]
                with lock:
                    counts[name] = counts.get(name, 0) + 1
                    return name, counts[name]
            def do_HEAD(self):
                self.answer(200, b"", [("Content-Length", "5"), ("ETag", '"e"')]) if False else self._head()
            def _head(self):
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.send_header("ETag", '"e"')
                self.end_headers()
            def do_GET(self):
                if self.path == "/__counts":
                    import json
                    return self.answer(200, json.dumps(counts).encode())
                name, n = self.count()
                if name == "slow" and n < 3: return self.answer(503, ERROR % b"SlowDown")
                if name == "bad": return self.answer(400, ERROR % b"InvalidArgument")
                if name == "always500": return self.answer(500, ERROR % b"InternalError")
                self.answer(200, b"hello")
            def do_PUT(self):
                length = int(self.headers.get("Content-Length", "0"))
                if length: self.rfile.read(length)
                name, n = self.count()
                if self.headers.get("x-amz-copy-source"):
                    if name == "flaky-copy" and n == 1: return self.answer(200, ERROR % b"InternalError")
                    if name == "broken-copy": return self.answer(200, ERROR % b"InternalError")
                    if name == "denied-copy": return self.answer(200, ERROR % b"InvalidRequest")
                    return self.answer(200, OK)
                self.answer(200)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """#

    @Test func scriptedFaults() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("exch-fake-s3-\(UUID().uuidString).py").path
        try Data(Self.script.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let server = try ChildProcess(executable: "/usr/bin/env", arguments: ["python3", path])
        defer {
            server.signal(SIGKILL)
        }
        var lines = server.lines().makeAsyncIterator()
        let port = try #require(try await lines.next())
        let store = try #require(
            try await ObjectStorage.open(
                "s3://fake",
                environment: [
                    "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:\(port)",
                    "EXCHANGER_S3_MAX_ATTEMPTS": "3",
                ]) as? S3ObjectStore)

        // 200 + <Error>InternalError once: retried, then the copy succeeds.
        let copied = try await store.copy(from: try ObjectKey("src"), to: try ObjectKey("flaky-copy"))
        #expect(copied.etag == "etag1" && copied.size == 5)
        // 200 + <Error>InternalError every time: a transient failure after 3 attempts.
        await expectStorageError(.transient) { try await store.copy(from: try ObjectKey("src"), to: try ObjectKey("broken-copy")) }
        // 200 + a non-retryable <Error>: fails at once.
        await expectStorageError(.failed) { try await store.copy(from: try ObjectKey("src"), to: try ObjectKey("denied-copy")) }
        // 503 SlowDown twice, then the object.
        #expect(try await store.get(try ObjectKey("slow")) == Data("hello".utf8))
        // 400 is not retried; 500 every time is transient.
        await expectStorageError(.failed) { try await store.get(try ObjectKey("bad")) }
        await expectStorageError(.transient) { try await store.get(try ObjectKey("always500")) }

        let response = try await store.client.execute(.init(url: "http://127.0.0.1:\(port)/__counts"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 16)
        let counts = try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Int])
        #expect(counts["flaky-copy"] == 2)
        #expect(counts["broken-copy"] == 3)
        #expect(counts["denied-copy"] == 1)
        #expect(counts["slow"] == 3)
        #expect(counts["bad"] == 1)
        #expect(counts["always500"] == 3)
        try await store.shutdown()

        // Nothing listening: connection errors are retried, then transient.
        server.signal(SIGKILL)
        _ = try await server.wait()
        let dead = try await ObjectStorage.open(
            "s3://fake",
            environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:\(port)", "EXCHANGER_S3_MAX_ATTEMPTS": "2"])
        await expectStorageError(.transient) { try await dead.get(try ObjectKey("x")) }
        try await dead.shutdown()
    }
}
