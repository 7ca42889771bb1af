import AsyncHTTPClient
import Broker
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Orchestrator
import OrchestratorService
import Testing

/// The token every in-process test server accepts.
let testToken = "test-token-\(UUID().uuidString)"

/// The API on a fresh PostgreSQL broker, served over loopback on a free port.
struct APIHarness: Sendable {
    let broker: Broker
    let service: ExchangeService
    let port: Int

    var base: String { "http://127.0.0.1:\(port)" }

    /// One HTTP request over loopback.
    func call(
        _ method: HTTPMethod, _ path: String, body: String? = nil, token: String? = testToken,
        contentType: String? = "application/json", headers: [(String, String)] = []
    ) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
            request.body = .bytes(ByteBuffer(string: body))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        return HTTPResult(status: Int(response.status.code), headers: response.headers, body: String(buffer: buffer))
    }

    /// A loop over the lifecycle of this harness's exchanges, as a replica runs it.
    func workLoop(owner: String = "test-replica") -> OrchestratorWorkLoop {
        OrchestratorWorkLoop(runner: service.runner, owner: owner, settings: service.settings, logger: Logger(label: "test.loop"))
    }
}

struct HTTPResult: Sendable {
    let status: Int
    let headers: HTTPHeaders
    let body: String

    /// The body as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    /// `error.code`, `error.field` of an error body.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorField: String? { (json["error"] as? [String: Any])?["field"] as? String }
}

/// Fast timings for tests; a small body limit.
let serviceTestSettings: OrchestratorServiceSettings = {
    var settings = OrchestratorServiceSettings()
    settings.maxBodyBytes = 4096
    settings.listLimit = 50
    settings.lease = .seconds(5)
    settings.pollInterval = .milliseconds(20)
    settings.core.drain.checkInterval = .milliseconds(20)
    settings.core.drain.workerStopTimeout = .seconds(5)
    settings.core.drain.workerPollInterval = .milliseconds(50)
    settings.core.copyRetries = CopyRetrySettings(retries: 1, initialDelay: .milliseconds(10), backoffRate: 2)
    return settings
}()

/// Runs `body` with the API served over a fresh PostgreSQL broker (tokens nil: no authentication);
/// `restartable`: on the restartable test server, held alone (see ``RestartablePostgres``).
func withAPI<T: Sendable>(
    tokens: APITokens? = APITokens([testToken]), settings: OrchestratorServiceSettings = serviceTestSettings,
    copier: any CaseDataCopying = InMemoryCopier(count: 3), restartable: Bool = false, _ body: (APIHarness) async throws -> T
) async throws -> T {
    guard restartable else {
        return try await withTestBroker(.postgres) { broker, _ in try await serve(broker, tokens, settings, copier, body) }
    }
    return try await RestartablePostgres.withDatabase { url in
        let broker = try await Broker.connect(url: url)
        do {
            let result = try await serve(broker, tokens, settings, copier, body)
            await broker.close()
            return result
        } catch {
            await broker.close()
            throw error
        }
    }
}

private func serve<T: Sendable>(
    _ broker: Broker, _ tokens: APITokens?, _ settings: OrchestratorServiceSettings, _ copier: any CaseDataCopying,
    _ body: (APIHarness) async throws -> T
) async throws -> T {
    let service = ExchangeService(broker: broker, copier: copier, settings: settings, logger: Logger(label: "test.orchestrator"))
    let server = try await OrchestratorHTTPServer.start(
        service: service, tokens: tokens, host: "127.0.0.1", port: 0, logger: Logger(label: "test.http"))
    do {
        let result = try await body(APIHarness(broker: broker, service: service, port: server.port))
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// The case-data copy seam, in memory: `count` documents with new ids source + 1000.
struct InMemoryCopier: CaseDataCopying {
    var count: Int
    /// What ``leftBehindSourceDocuments(_:)`` answers for every exchange.
    var leftBehind: [Int64] = []

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {}

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { leftBehind }

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        CopyOutcome(documents: (0..<count).map { index in
            let id = Int64(index + 1)
            return CopiedDocument(sourceDocumentID: id, documentID: id + 1000, exhibitID: nil,
                files: [DocumentFile(name: "document.pdf", kind: .rendition)])
        })
    }
}

/// A valid request body.
func requestBody(source: Int64 = 41, destination: Int64 = 42, batch: Int64 = 7, label: Int64 = 3) -> String {
    #"{"sourceCaseId": \#(source), "destinationCaseId": \#(destination), "batchId": \#(batch), "labelId": \#(label)}"#
}
