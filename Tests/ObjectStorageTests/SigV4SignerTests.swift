import ExchangerTestSupport
import Foundation
import Testing

@testable import ObjectStorage

/// The published AWS SigV4 test-suite vectors (aws-sig-v4-test-suite: AKIDEXAMPLE, us-east-1,
/// service "service", 20150830T123600Z) and the S3 examples of the S3 API reference
/// ("Signature Calculations for the Authorization Header", examplebucket, 20130524T000000Z).
@Suite struct SigV4SignerTests {
    static let suiteSigner = SigV4Signer(
        credentials: .init(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z
    static let s3Signer = SigV4Signer(
        credentials: .init(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "s3")
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method = "GET"
        var path = "/"
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body = ""
        var signedHeaders = "host;x-amz-date"
        var signature: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(name: "get-vanilla", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(
            name: "get-vanilla-query-order-key-case", query: [("Param2", "value2"), ("Param1", "value1")],
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(
            name: "get-vanilla-query-order-value", query: [("Param1", "value2"), ("Param1", "value1")],
            signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
        Vector(
            name: "get-vanilla-utf8-query", query: [("\u{1234}", "bar")],
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(
            name: "get-unreserved", path: "/" + SigV4Signer.uriEncode("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(
            name: "get-header-key-duplicate", headers: [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            signedHeaders: "host;my-header1;x-amz-date", signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
        Vector(
            name: "get-header-value-order",
            headers: [("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2")],
            signedHeaders: "host;my-header1;x-amz-date", signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
        Vector(
            name: "get-header-value-trim", headers: [("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")],
            signedHeaders: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        Vector(
            name: "post-x-www-form-urlencoded", method: "POST", headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1", signedHeaders: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ]

    @Test(arguments: vectors)
    func awsTestSuite(_ vector: Vector) {
        let headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")] + vector.headers
        let result = Self.suiteSigner.sign(
            method: vector.method, encodedPath: vector.path, query: vector.query, headers: headers,
            payloadHash: SigV4Signer.sha256Hex(Data(vector.body.utf8)), date: Self.suiteDate)
        #expect(result.signature == vector.signature)
        #expect(result.signedHeaders == vector.signedHeaders)
        #expect(
            result.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=\(vector.signedHeaders), Signature=\(vector.signature)"
        )
    }

    @Test func getVanillaIntermediateStrings() {
        let result = Self.suiteSigner.sign(
            method: "GET", encodedPath: "/", query: [], headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
            payloadHash: SigV4Signer.emptyPayloadHash, date: Self.suiteDate)
        #expect(
            result.canonicalRequest
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        #expect(
            result.stringToSign
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        )
    }

    @Test func s3GetObjectWithRange() {
        let result = Self.s3Signer.sign(
            method: "GET", encodedPath: "/test.txt", query: [],
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash),
                ("x-amz-date", "20130524T000000Z"),
            ], payloadHash: SigV4Signer.emptyPayloadHash, date: Self.s3Date)
        #expect(result.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(result.signedHeaders == "host;range;x-amz-content-sha256;x-amz-date")
        #expect(
            result.stringToSign
                == "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        )
    }

    @Test func s3PutObject() {
        let hash = SigV4Signer.sha256Hex(Data("Welcome to Amazon S3.".utf8))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let result = Self.s3Signer.sign(
            method: "PUT", encodedPath: "/" + SigV4Signer.uriEncode("test$file.text", encodeSlash: false), query: [],
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", hash),
            ], payloadHash: hash, date: Self.s3Date)
        #expect(
            result.canonicalRequest == """
                PUT
                /test%24file.text

                date:Fri, 24 May 2013 00:00:00 GMT
                host:examplebucket.s3.amazonaws.com
                x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072
                x-amz-date:20130524T000000Z
                x-amz-storage-class:REDUCED_REDUNDANCY

                date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class
                44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072
                """)
        #expect(result.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func s3BucketLifecycleAndList() {
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash), ("x-amz-date", "20130524T000000Z"),
        ]
        let lifecycle = Self.s3Signer.sign(
            method: "GET", encodedPath: "/", query: [("lifecycle", "")], headers: headers, payloadHash: SigV4Signer.emptyPayloadHash,
            date: Self.s3Date)
        #expect(lifecycle.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
        let list = Self.s3Signer.sign(
            method: "GET", encodedPath: "/", query: [("prefix", "J"), ("max-keys", "2")], headers: headers,
            payloadHash: SigV4Signer.emptyPayloadHash, date: Self.s3Date)
        #expect(list.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func uriEncoding() {
        #expect(SigV4Signer.uriEncode("a b+c%d=e&f~g/h", encodeSlash: false) == "a%20b%2Bc%25d%3De%26f~g/h")
        #expect(SigV4Signer.uriEncode("a/b") == "a%2Fb")
        #expect(SigV4Signer.uriEncode("ü文") == "%C3%BC%E6%96%87")
        #expect(SigV4Signer.uriEncode("-_.~AZaz09") == "-_.~AZaz09")
        #expect(SigV4Signer.canonicalQuery([("b", "2"), ("a", "x y"), ("a", "+"), ("c", "")]) == "a=%2B&a=x%20y&b=2&c=")
        #expect(SigV4Signer.timestamp(Self.suiteDate) == "20150830T123600Z")
    }

    @Test func storeBuildsEncodedTargets() async throws {
        let configuration = S3Configuration(
            credentials: .init(accessKeyID: "a", secretAccessKey: "s"), endpoint: "http://127.0.0.1:9000")
        let store = S3ObjectStore(location: StorageLocation(scheme: .s3, root: "bucket", prefix: "p x"), configuration: configuration)
        let key = try ObjectKey("a b/c+d.pdf")
        let target = store.target(for: S3Request(method: .GET, key: store.fullKey(key), query: [("prefix", "a b/")]))
        #expect(target.path == "/bucket/p%20x/a%20b/c%2Bd.pdf")
        #expect(target.host == "127.0.0.1:9000")
        #expect(target.url == "http://127.0.0.1:9000/bucket/p%20x/a%20b/c%2Bd.pdf?prefix=a%20b%2F")
        #expect(store.copySource(key) == "/bucket/p%20x/a%20b/c%2Bd.pdf")
        try await store.shutdown()

        let aws = S3ObjectStore(
            location: StorageLocation(scheme: .s3, root: "bucket"),
            configuration: S3Configuration(credentials: .init(accessKeyID: "a", secretAccessKey: "s"), region: "eu-west-1"))
        let virtual = aws.target(for: S3Request(method: .GET, key: "k~1"))
        #expect(virtual.url == "https://bucket.s3.eu-west-1.amazonaws.com/k~1")
        #expect(virtual.host == "bucket.s3.eu-west-1.amazonaws.com" && virtual.path == "/k~1")
        try await aws.shutdown()
    }

    /// botocore's S3SigV4Auth, with the same credentials and instant, must produce the very same
    /// canonical request and signature for every awkward key, in the path, in x-amz-copy-source
    /// and as a list prefix.
    @Test func matchesBotocore() async throws {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("exch-botocore-\(UUID().uuidString).py").path
        try Data(Self.botocoreScript.utf8).write(to: URL(fileURLWithPath: script))
        defer { try? FileManager.default.removeItem(atPath: script) }

        let signer = SigV4Signer(
            credentials: .init(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: "tok/en+="),
            region: "eu-central-1", service: "s3")
        let host = "127.0.0.1:9000"
        let payload = SigV4Signer.sha256Hex(Data("hello".utf8))
        var cases: [[String: Any]] = []
        var ours: [SigV4Signer.Signature] = []
        for key in AwkwardKeys.s3 {
            let path = "/bucket/" + SigV4Signer.uriEncode(key, encodeSlash: false)
            let requests: [(String, [(String, String)], [(String, String)], String)] = [
                ("GET", [], [], SigV4Signer.emptyPayloadHash),
                ("PUT", [], [("Content-Type", "application/pdf")], payload),
                ("PUT", [], [("x-amz-copy-source", "/bucket/" + SigV4Signer.uriEncode(key, encodeSlash: false))], SigV4Signer.emptyPayloadHash),
                ("GET", [("list-type", "2"), ("prefix", key), ("continuation-token", "a+b/c=d"), ("max-keys", "1000")], [], SigV4Signer.emptyPayloadHash),
            ]
            for (method, query, extra, hash) in requests {
                let headers =
                    [("Host", host), ("x-amz-date", "20150830T123600Z"), ("x-amz-content-sha256", hash), ("x-amz-security-token", "tok/en+=")]
                    + extra
                ours.append(signer.sign(method: method, encodedPath: path, query: query, headers: headers, payloadHash: hash, date: Self.suiteDate))
                cases.append([
                    "method": method, "url": "http://\(host)\(path)", "params": query.map { [$0.0, $0.1] },
                    "headers": ([("X-Amz-Content-SHA256", hash), ("X-Amz-Security-Token", "tok/en+=")] + extra).map { [$0.0, $0.1] },
                ])
            }
        }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("exch-botocore-\(UUID().uuidString).json").path
        try JSONSerialization.data(withJSONObject: cases).write(to: URL(fileURLWithPath: input))
        defer { try? FileManager.default.removeItem(atPath: input) }

        let (status, output) = try await run("python3", [script, input])
        try #require(status == 0, "the botocore script failed: \(output)")
        let answers = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: String]])
        try #require(answers.count == ours.count)
        for (index, answer) in answers.enumerated() {
            #expect(ours[index].canonicalRequest == answer["canonicalRequest"], "case \(index): \(cases[index]["url"] ?? "")")
            #expect(ours[index].signature == answer["signature"], "case \(index)")
        }
    }

    static let botocoreScript = #"""
        import json, sys
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok/en+=")
        auth = S3SigV4Auth(credentials, "s3", "eu-central-1")
        out = []
        for case in json.load(open(sys.argv[1])):
            params = {}
            for name, value in case["params"]:
                params[name] = value
            request = AWSRequest(method=case["method"], url=case["url"], params=params or None, data=b"")
            for name, value in case["headers"]:
                request.headers[name] = value
            request.headers["X-Amz-Date"] = "20150830T123600Z"
            request.context["timestamp"] = "20150830T123600Z"
            canonical = auth.canonical_request(request)
            string_to_sign = auth.string_to_sign(request, canonical)
            out.append({"canonicalRequest": canonical, "signature": auth.signature(string_to_sign, request)})
        print(json.dumps(out))
        """#
}
