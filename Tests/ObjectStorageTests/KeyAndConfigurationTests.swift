import ExchangerTestSupport
import Foundation
import Testing

@testable import ObjectStorage

@Suite struct ObjectKeyTests {
    @Test(arguments: [
        "", "/a", "a/", "a//b", "a/../b", "..", "a/./b", ".", "a\u{0}b", "a\nb", "tab\there", "del\u{7f}", "c1\u{85}x",
        String(repeating: "x", count: 1025),
    ])
    func rejectsInvalidKeys(_ raw: String) {
        #expect(throws: ObjectStorageError.self) { try ObjectKey(raw) }
        do {
            _ = try ObjectKey(raw)
        } catch {
            #expect(error.code == .invalidKey)
        }
    }

    @Test(arguments: AwkwardKeys.s3 + AwkwardKeys.file + ["a", "..a/b..", ".hidden/x", String(repeating: "y", count: 1024)])
    func acceptsValidKeys(_ raw: String) throws {
        #expect(try ObjectKey(raw).rawValue == raw)
    }

    @Test func segmentsAndAppending() throws {
        #expect(try ObjectKey(segments: ["a", "b c", "d.pdf"]).rawValue == "a/b c/d.pdf")
        #expect(throws: ObjectStorageError.self) { try ObjectKey(segments: ["a/b"]) }
        #expect(throws: ObjectStorageError.self) { try ObjectKey(segments: ["a", ""]) }
        #expect(try ObjectKey("a").appending("b/c").rawValue == "a/b/c")
        #expect(throws: ObjectStorageError.self) { try ObjectKey("a").appending("../b") }
        let decoded = try JSONDecoder().decode([ObjectKey].self, from: Data(#"["x/y"]"#.utf8))
        #expect(decoded == [try ObjectKey("x/y")])
        #expect(throws: (any Error).self) { try JSONDecoder().decode([ObjectKey].self, from: Data(#"["x//y"]"#.utf8)) }
    }

    @Test func caseKeyLayouts() throws {
        #expect(CaseKeys.casePrefix(caseID: 12) == "case_12")
        #expect(try CaseKeys.documentFile(caseID: 12, documentID: 7, fileName: "a b.pdf").rawValue == "case_12/documents/7/a b.pdf")
        #expect(CaseKeys.documentPrefix(caseID: 12, documentID: 7) == "case_12/documents/7/")
        #expect(try CaseKeys.documentText(caseID: 1, batchID: 2, documentID: 3).rawValue == "case_1/processed-files/2/txt/3/content.txt")
        #expect(
            try CaseKeys.attachmentText(caseID: 1, batchID: 2, documentID: 3, position: 4).rawValue
                == "case_1/processed-files/2/txt/3/attachments/4/content.txt")
        #expect(
            try CaseKeys.commentThreads(caseID: 1, batchID: 2, documentID: 3).rawValue == "case_1/processed-files/2/comments/3/comments.json")
        #expect(try CaseKeys.stagedPayload(queue: "q", messageID: "m-1").rawValue == "staging/q/m-1.json")
        #expect(throws: ObjectStorageError.self) { try CaseKeys.documentFile(caseID: 1, documentID: 2, fileName: "../x") }
        #expect(throws: ObjectStorageError.self) { try CaseKeys.documentFile(caseID: 1, documentID: 2, fileName: "a/b") }
    }
}

@Suite struct StorageLocationTests {
    @Test func parsesURLs() throws {
        let s3 = try StorageLocation("s3://bucket/tenant/a")
        #expect(s3.scheme == .s3 && s3.root == "bucket" && s3.prefix == "tenant/a/")
        #expect(s3.url == "s3://bucket/tenant/a/")
        #expect(try StorageLocation("s3://bucket").prefix == "")
        #expect(try StorageLocation("s3://bucket/").prefix == "")
        let file = try StorageLocation("file:///var/data/")
        #expect(file.scheme == .file && file.root == "/var/data" && file.prefix == "")
        #expect(try StorageLocation("file://localhost/x").root == "/x")
        #expect(try StorageLocation("file:/x/y").root == "/x/y")
        #expect(try StorageLocation("file:///").root == "/")
        for bad in ["http://x", "s3://", "s3:///key", "file://host/x", "file:relative", "s3://bu/cket//x", "s3://b/../x", "s3://b@d/x"] {
            #expect(throws: ObjectStorageError.self, "\(bad)") { try StorageLocation(bad) }
        }
    }

    @Test func parsesObjectURLs() throws {
        let (s3, key) = try StorageLocation.parseObjectURL("s3://b/a/b.pdf")
        #expect(s3 == StorageLocation(scheme: .s3, root: "b") && key.rawValue == "a/b.pdf")
        #expect(s3.url(for: key) == "s3://b/a/b.pdf")
        let (file, fileKey) = try StorageLocation.parseObjectURL("file:///d/a/b.pdf")
        #expect(file.root == "/d/a" && fileKey.rawValue == "b.pdf")
        #expect(file.url(for: fileKey) == "file:///d/a/b.pdf")
        let (top, topKey) = try StorageLocation.parseObjectURL("file:///x.txt")
        #expect(top.root == "/" && topKey.rawValue == "x.txt")
        for bad in ["s3://b", "s3://b/", "s3://b/dir/", "file:///", "file:///d/", "s3://b/a//b"] {
            #expect(throws: ObjectStorageError.self, "\(bad)") { try StorageLocation.parseObjectURL(bad) }
        }
    }

    @Test func openPicksTheStore() async throws {
        let file = try await ObjectStorage.open("file:///tmp/x", environment: [:])
        #expect(file is FileObjectStore)
        try await file.shutdown()
        await expectStorageError(.configuration) { try await ObjectStorage.open("s3://b", environment: [:]) }
        await expectStorageError(.invalidURL) { try await ObjectStorage.open("ftp://b", environment: [:]) }
        let s3 = try await ObjectStorage.open("s3://b/p", environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"])
        #expect(s3.location == StorageLocation(scheme: .s3, root: "b", prefix: "p/"))
        try await s3.shutdown()
    }
}

@Suite struct S3ConfigurationTests {
    @Test func defaults() throws {
        let configuration = try S3Configuration(environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"])
        #expect(configuration.region == "us-east-1")
        #expect(configuration.endpoint == "https://s3.us-east-1.amazonaws.com")
        #expect(configuration.addressing == .virtual)
        #expect(configuration.retry == RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(5)))
        #expect(configuration.multipartCopyThreshold == 5 << 30)
        #expect(configuration.multipartPartSize == 512 << 20)
        #expect(configuration.requestTimeout == .seconds(60))
        #expect(configuration.maxConnections == 64)
        #expect(configuration.listPageSize == 1000)
        #expect(configuration.credentials.sessionToken == nil)
        #expect(!"\(configuration.credentials)".contains("SK"))
    }

    @Test func fromEnvironment() throws {
        try withTempFile("  secret-from-file\n") { secretFile in
            try withTempFile("token-from-file") { tokenFile in
                let configuration = try S3Configuration(environment: [
                    "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY_FILE": secretFile, "AWS_SESSION_TOKEN_FILE": tokenFile,
                    "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://other:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000/",
                    "EXCHANGER_S3_MAX_ATTEMPTS": "3", "EXCHANGER_S3_MULTIPART_COPY_THRESHOLD": "6291456",
                    "EXCHANGER_S3_MULTIPART_PART_SIZE": "5242880", "EXCHANGER_S3_REQUEST_TIMEOUT": "2.5",
                    "EXCHANGER_S3_MAX_CONNECTIONS": "8", "EXCHANGER_S3_LIST_PAGE_SIZE": "7",
                ])
                #expect(configuration.credentials == .init(accessKeyID: "AK", secretAccessKey: "secret-from-file", sessionToken: "token-from-file"))
                #expect(configuration.region == "eu-west-1")
                #expect(configuration.endpoint == "http://127.0.0.1:9000")
                #expect(configuration.addressing == .path)
                #expect(configuration.retry.maxAttempts == 3)
                #expect(configuration.multipartCopyThreshold == 6 << 20)
                #expect(configuration.multipartPartSize == 5 << 20)
                #expect(configuration.requestTimeout == .milliseconds(2500))
                #expect(configuration.maxConnections == 8)
                #expect(configuration.listPageSize == 7)
            }
        }
        let region = try S3Configuration(environment: [
            "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://minio:9000", "EXCHANGER_S3_ADDRESSING": "virtual",
        ])
        #expect(region.region == "us-west-2" && region.endpoint == "http://minio:9000" && region.addressing == .virtual)
    }

    @Test(arguments: [
        ["AWS_SECRET_ACCESS_KEY": "SK"],
        ["AWS_ACCESS_KEY_ID": "AK"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent/secret"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "EXCHANGER_S3_MAX_ATTEMPTS": "zero"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "EXCHANGER_S3_MULTIPART_PART_SIZE": "1024"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "EXCHANGER_S3_ADDRESSING": "dns"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_ENDPOINT_URL_S3": "minio:9000"],
        ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "EXCHANGER_S3_REQUEST_TIMEOUT": "-1"],
    ])
    func rejectsBadSettings(_ environment: [String: String]) {
        do {
            _ = try S3Configuration(environment: environment)
            Issue.record("accepted \(environment)")
        } catch {
            #expect(error.code == .configuration)
        }
    }

    @Test func retryPolicyFullJitter() {
        let policy = RetryPolicy()
        #expect(policy.ceiling(afterAttempt: 1) == .milliseconds(100))
        #expect(policy.ceiling(afterAttempt: 2) == .milliseconds(200))
        #expect(policy.ceiling(afterAttempt: 6) == .milliseconds(3200))
        #expect(policy.ceiling(afterAttempt: 7) == .seconds(5))
        #expect(policy.ceiling(afterAttempt: 60) == .seconds(5))
        for attempt in 1...10 {
            let delay = policy.delay(afterAttempt: attempt)
            #expect(delay >= .zero && delay <= policy.ceiling(afterAttempt: attempt))
        }
    }

    @Test func errorClassification() {
        func code(_ status: Int, _ s3Code: String?) -> ObjectStorageError.Code {
            S3ErrorClassifier.error(status: status, document: s3Code.map { S3ErrorDocument(code: $0, message: "m") }, operation: "op").code
        }
        #expect(code(404, nil) == .notFound)
        #expect(code(404, "NoSuchBucket") == .configuration, "the store's bucket missing is the setup's fault, not a document's")
        #expect(code(403, "AccessDenied") == .accessDenied)
        #expect(code(403, "SignatureDoesNotMatch") == .accessDenied)
        #expect(code(500, "InternalError") == .transient)
        #expect(code(503, "SlowDown") == .transient)
        #expect(code(400, "RequestTimeout") == .transient)
        #expect(code(429, nil) == .transient)
        #expect(code(400, "InvalidArgument") == .failed)
        #expect(code(409, "BucketNotEmpty") == .failed)
    }

    @Test func copyResultParsing() throws {
        let ok = try S3CopyResult.parse(Data("""
            <?xml version="1.0" encoding="UTF-8"?>
            <CopyObjectResult><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"9b2cf535f27731c974343645a3985328"</ETag></CopyObjectResult>
            """.utf8))
        #expect(ok.etag == "9b2cf535f27731c974343645a3985328")
        #expect(ok.lastModified == Date(timeIntervalSince1970: 1_255_369_830))
        let part = try S3CopyResult.parse(Data("<CopyPartResult><ETag>&quot;abc&quot;</ETag></CopyPartResult>".utf8))
        #expect(part.etag == "abc")
        for (code, expected) in [("InternalError", ObjectStorageError.Code.transient), ("SlowDown", .transient), ("NoSuchKey", .notFound), ("InvalidRequest", .failed)] {
            let body = "<?xml version=\"1.0\"?>\n<Error><Code>\(code)</Code><Message>We encountered an internal error.</Message></Error>"
            do {
                _ = try S3CopyResult.parse(Data(body.utf8))
                Issue.record("a 200 with <Error> \(code) was taken for success")
            } catch {
                #expect(error.code == expected)
                #expect(error.message.contains(code))
            }
        }
        #expect(throws: ObjectStorageError.self) { try S3CopyResult.parse(Data("not xml".utf8)) }
    }

    @Test func listPageParsing() throws {
        let page = try ListObjectsPage.parse(Data("""
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount>
            <MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
            <Contents><Key>a &amp; b/&lt;c&gt;.txt</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>&quot;e1&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
            <Contents><Key>ünï code</Key><LastModified>2009-10-12T17:50:30Z</LastModified><ETag>"e2"</ETag><Size>0</Size></Contents>
            </ListBucketResult>
            """.utf8))
        #expect(page.entries.map(\.key) == ["a & b/<c>.txt", "ünï code"])
        #expect(page.entries.map(\.size) == [434234, 0])
        #expect(page.entries.map(\.etag) == ["e1", "e2"])
        #expect(page.entries.allSatisfy { $0.lastModified == Date(timeIntervalSince1970: 1_255_369_830) })
        #expect(page.isTruncated && page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    }
}

private func withTempFile(_ contents: String, _ body: (String) throws -> Void) throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("exch-cfg-\(UUID().uuidString)").path
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    try body(path)
}
