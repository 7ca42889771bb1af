import AsyncHTTPClient
import ExchangerTestSupport
import Foundation
import Orchestrator
import OrchestratorService
import Testing

/// A line-oriented reading of the parts of openapi.yaml the tests check (no YAML library).
struct OpenAPIOutline {
    /// (method, path) of every operation under `paths:`.
    var operations: Set<String> = []
    /// Property names of `components.schemas.ExchangeRequest`.
    var requestProperties: Set<String> = []
    var version: String?

    init(_ text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var section = ""
        var path: String?
        var inRequestSchema = false
        var inRequestProperties = false
        for line in lines {
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.trimmingCharacters(in: .whitespaces).hasPrefix("#") { continue }
            let indent = line.prefix { $0 == " " }.count
            let content = line.trimmingCharacters(in: .whitespaces)
            if indent == 0 {
                section = content
                if content.hasPrefix("openapi:") { version = content.dropFirst("openapi:".count).trimmingCharacters(in: .whitespaces) }
                continue
            }
            if section == "paths:" {
                if indent == 2, content.hasSuffix(":") { path = String(content.dropLast()) }
                if indent == 4, let path, let method = ["get:", "post:", "put:", "delete:", "patch:"].first(where: { $0 == content }) {
                    operations.insert(method.dropLast().uppercased() + " " + path)
                }
            }
            if section == "components:" {
                if indent == 4 { inRequestSchema = content == "ExchangeRequest:" ; inRequestProperties = false }
                if inRequestSchema, indent == 6 { inRequestProperties = content == "properties:" }
                if inRequestProperties, indent == 8, content.hasSuffix(":") { requestProperties.insert(String(content.dropLast())) }
            }
        }
    }
}

@Suite("openapi.yaml describes the router")
struct OpenAPITests {
    @Test func theCompiledDocumentIsTheFileInTheRepository() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/OrchestratorService/openapi.yaml")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(try OrchestratorAPI.openAPIDocument() == text, "run scripts/embed-openapi after editing openapi.yaml")
    }

    @Test("the document's (method, path) set equals the routes the router serves; every request field is in the schema")
    func matchesRoutes() async throws {
        try await withAPI { api in
            let response = try await api.call(.GET, "/openapi.yaml", token: nil)
            #expect(response.status == 200)
            #expect(response.headers.first(name: "Content-Type")?.contains("yaml") == true)
            let outline = OpenAPIOutline(response.body)
            #expect(outline.version == "3.1.0")
            let served = Set(OrchestratorAPI.routes.map { "\($0.method) \($0.path)" })
            #expect(outline.operations == served)
            #expect(outline.operations.count == OrchestratorAPI.routes.count)
            #expect(outline.requestProperties == ExchangeRequest.fields)
            #expect(response.body == (try OrchestratorAPI.openAPIDocument()))
            // Each documented route is really served (not the router's 404 for an unknown route).
            for route in OrchestratorAPI.routes {
                let path = route.path.replacingOccurrences(of: "{jobId}", with: "no-such-job")
                let answer = try await api.call(
                    .init(rawValue: route.method), path, body: route.method == "POST" ? "{}" : nil)
                #expect(answer.errorCode != "notFound" || route.path.contains("{jobId}"), "\(route.method) \(route.path)")
                if route.path.contains("{jobId}") { #expect(answer.status == 404) }
            }
        }
    }
}

@Suite("API tokens and settings")
struct TokenAndSettingsTests {
    @Test("tokens from EXCHANGER_API_TOKENS and EXCHANGER_API_TOKENS_FILE; exact match only")
    func tokens() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory.appendingPathComponent("tokens")
            try "# comment\nfile-one\n\n  file-two  \n".write(to: file, atomically: true, encoding: .utf8)
            let tokens = try APITokens(environment: ["EXCHANGER_API_TOKENS": "env-one, env-two,", "EXCHANGER_API_TOKENS_FILE": file.path])
            #expect(tokens.count == 4)
            for token in ["env-one", "env-two", "file-one", "file-two"] { #expect(tokens.accepts(token)) }
            for token in ["", "env-on", "env-one ", "ENV-ONE", "# comment", "file-twox"] { #expect(!tokens.accepts(token)) }
            #expect(try APITokens(environment: [:]).isEmpty)
            #expect(throws: OrchestratorServiceError.self) {
                try APITokens(environment: ["EXCHANGER_API_TOKENS_FILE": directory.appendingPathComponent("missing").path])
            }
        }
        #expect(APITokens.bearerToken("Bearer abc") == "abc")
        #expect(APITokens.bearerToken("bearer  abc ") == "abc")
        #expect(APITokens.bearerToken("Basic abc") == nil)
        #expect(APITokens.bearerToken("Bearer") == nil)
        #expect(APITokens.bearerToken(nil) == nil)
    }

    @Test("settings from the environment, malformed values refused")
    func settings() throws {
        let settings = try OrchestratorServiceSettings(environment: [
            "EXCHANGER_ORCHESTRATOR_MAX_BODY_BYTES": "2048", "EXCHANGER_ORCHESTRATOR_LEASE_SECONDS": "12",
            "EXCHANGER_ORCHESTRATOR_POLL_SECONDS": "0.5", "EXCHANGER_ORCHESTRATOR_COPY_RETRIES": "5",
            "EXCHANGER_ORCHESTRATOR_MAX_DOCUMENT_IDS": "20",
        ])
        #expect(settings.maxBodyBytes == 2048)
        #expect(settings.lease == .seconds(12))
        #expect(settings.pollInterval == .milliseconds(500))
        #expect(settings.core.copyRetries.retries == 5)
        #expect(settings.core.limits.maxDocumentIDs == 20)
        #expect(OrchestratorServiceSettings().maxBodyBytes == 1 << 20)
        for (name, value) in [("EXCHANGER_ORCHESTRATOR_MAX_BODY_BYTES", "lots"), ("EXCHANGER_ORCHESTRATOR_LEASE_SECONDS", "0"),
            ("EXCHANGER_ORCHESTRATOR_POLL_SECONDS", "-1")]
        {
            #expect(throws: OrchestratorServiceError.self) { try OrchestratorServiceSettings(environment: [name: value]) }
        }
    }
}
