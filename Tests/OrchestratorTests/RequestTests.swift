import ExchangerEvents
import Foundation
import Orchestrator
import Testing

@Suite("exchange request validation")
struct RequestTests {
    static let base = #""sourceCaseId": 41, "destinationCaseId": 42, "batchId": 7"#

    struct Bad: Sendable, CustomTestStringConvertible {
        var body: String
        var field: String
        var reason: String
        var testDescription: String { "\(field): \(reason)" }
    }

    static let bad: [Bad] = [
        Bad(body: "[1]", field: "$", reason: "not a JSON object"),
        Bad(body: "{\(base), \"labelId\": 3, \"color\": \"red\"}", field: "color", reason: "unknown field"),
        Bad(body: #"{"destinationCaseId": 42, "batchId": 7, "labelId": 3}"#, field: "sourceCaseId", reason: "is required"),
        Bad(body: #"{"sourceCaseId": 0, "destinationCaseId": 42, "batchId": 7, "labelId": 3}"#, field: "sourceCaseId", reason: "positive"),
        Bad(body: #"{"sourceCaseId": 41, "destinationCaseId": -1, "batchId": 7, "labelId": 3}"#, field: "destinationCaseId", reason: "positive"),
        Bad(body: #"{"sourceCaseId": 41, "destinationCaseId": 42, "batchId": 1.5, "labelId": 3}"#, field: "batchId", reason: "positive integer"),
        Bad(body: #"{"sourceCaseId": 41, "destinationCaseId": 42, "batchId": "7", "labelId": 3}"#, field: "batchId", reason: "positive integer"),
        Bad(body: #"{"sourceCaseId": 41, "destinationCaseId": 41, "batchId": 7, "labelId": 3}"#, field: "destinationCaseId", reason: "must differ from sourceCaseId"),
        Bad(body: "{\(base)}", field: "labelId", reason: "exactly one of"),
        Bad(body: "{\(base), \"labelId\": 3, \"folderId\": 4}", field: "folderId", reason: "exactly one of"),
        Bad(body: "{\(base), \"folderId\": 4, \"documentIds\": [1]}", field: "documentIds", reason: "exactly one of"),
        Bad(body: "{\(base), \"labelId\": 0}", field: "labelId", reason: "positive"),
        Bad(body: "{\(base), \"folderId\": true}", field: "folderId", reason: "positive integer"),
        Bad(body: "{\(base), \"documentIds\": []}", field: "documentIds", reason: "must not be empty"),
        Bad(body: "{\(base), \"documentIds\": 5}", field: "documentIds", reason: "array"),
        Bad(body: "{\(base), \"documentIds\": [1, 2, 1]}", field: "documentIds[2]", reason: "given twice"),
        Bad(body: "{\(base), \"documentIds\": [1, -2]}", field: "documentIds[1]", reason: "positive"),
        Bad(body: "{\(base), \"documentIds\": [1, 2, 3, 4, 5, 6]}", field: "documentIds", reason: "at most 5"),
        Bad(body: "{\(base), \"labelId\": 3, \"requiresAnnotations\": \"yes\"}", field: "requiresAnnotations", reason: "true or false"),
        Bad(body: "{\(base), \"labelId\": 3, \"includeNatives\": 1}", field: "includeNatives", reason: "true or false"),
        Bad(body: "{\(base), \"labelId\": 3, \"redactionsAs\": \"burn\"}", field: "redactionsAs", reason: "brand_in"),
        Bad(body: "{\(base), \"labelId\": 3, \"highlightsAs\": 1}", field: "highlightsAs", reason: "brand_in"),
        Bad(body: "{\(base), \"labelId\": 3, \"notesAs\": \"LAYER\"}", field: "notesAs", reason: "brand_in"),
        Bad(body: "{\(base), \"labelId\": 3, \"stickersAs\": []}", field: "stickersAs", reason: "brand_in"),
        Bad(body: "{\(base), \"labelId\": 3, \"batesAs\": \"\"}", field: "batesAs", reason: "brand_in"),
        Bad(body: "{\(base), \"labelId\": 3, \"confidentialityCodesAs\": null, \"commentsAs\": \"layer\"}", field: "commentsAs", reason: "unknown field"),
    ]

    @Test("invalid requests are refused with the field and the reason", arguments: bad)
    func refused(_ bad: Bad) throws {
        do {
            _ = try ExchangeRequest.parse(Data(bad.body.utf8), limits: RequestLimits(maxDocumentIDs: 5))
            Issue.record("accepted: \(bad.body)")
        } catch {
            #expect(error.code == .invalidRequest)
            #expect(error.field == bad.field, "\(error)")
            #expect(error.message.contains(bad.reason), "\(error)")
        }
    }

    @Test("a valid request takes the defaults and round-trips through JSON")
    func valid() throws {
        let parsed = try ExchangeRequest.parse(Data("{\(Self.base), \"documentIds\": [5, 3], \"requiresAnnotations\": true, \"redactionsAs\": \"brand_in\"}".utf8))
        #expect(parsed.selection == .documents([5, 3]))
        #expect(parsed.requiresAnnotations && !parsed.includeNatives)
        #expect(parsed.redactionsAs == .brandIn)
        #expect([parsed.highlightsAs, parsed.notesAs, parsed.stickersAs, parsed.batesAs, parsed.confidentialityCodesAs].allSatisfy { $0 == .layer })
        let encoded = try EventCoding.string(parsed)
        #expect(try EventCoding.decode(ExchangeRequest.self, from: encoded) == parsed)
        let label = try ExchangeRequest.parse(Data("{\(Self.base), \"labelId\": 9, \"folderId\": null}".utf8))
        #expect(label.selection == .label(9))
        #expect(!label.skipExchanged)
        #expect(try !EventCoding.string(label).contains("skipExchanged"), "a request without it is stored as before")
        let skipping = try ExchangeRequest.parse(Data("{\(Self.base), \"labelId\": 9, \"skipExchanged\": true}".utf8))
        #expect(skipping.skipExchanged)
        #expect(try EventCoding.decode(ExchangeRequest.self, from: try EventCoding.string(skipping)) == skipping)
        #expect(throws: OrchestratorError.self) { try ExchangeRequest.parse(Data("{\(Self.base), \"labelId\": 9, \"skipExchanged\": 1}".utf8)) }
    }

    @Test("the derived idempotency key covers cases, batch and selection, not the order of ids")
    func idempotencyKey() throws {
        let a = request(selection: .documents([1, 2, 3]))
        let b = request(selection: .documents([3, 1, 2]), annotations: true)
        #expect(try a.idempotencyKey() == b.idempotencyKey())
        #expect(try a.idempotencyKey().hasPrefix("sha256:"))
        for other in [request(source: 40, selection: .documents([1, 2, 3])), request(destination: 43, selection: .documents([1, 2, 3])),
                      request(batch: 8, selection: .documents([1, 2, 3])), request(selection: .documents([1, 2])),
                      request(selection: .label(1)), request(selection: .folder(1))] {
            #expect(try other.idempotencyKey() != a.idempotencyKey())
        }
        #expect(try request(selection: .label(1)).idempotencyKey() != request(selection: .folder(1)).idempotencyKey())
        // A skipping repeat is a new exchange; the key of a request without it is unchanged.
        var skipping = a
        skipping.skipExchanged = true
        #expect(try skipping.idempotencyKey() != a.idempotencyKey())
        // SHA-256 of "exchange-request/v1␟41␟42␟7␟documents:1,2,3", as earlier builds stored it.
        #expect(try a.idempotencyKey() == "sha256:71844dcd61dfa6350817e5f1dffdace18308182283e8df14c59a4b320268de40")
        #expect(try a.idempotencyKey(client: "abc") == "client:abc")
        #expect(throws: OrchestratorError.self) { try a.idempotencyKey(client: "") }
        #expect(throws: OrchestratorError.self) { try a.idempotencyKey(client: "a\nb") }
    }
}
