import AsyncHTTPClient
import Broker
import ConcurrencySupport
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import NIOHTTP1
import Orchestrator
@testable import OrchestratorService
import Testing

@Suite("Orchestrator HTTP API over loopback, PostgreSQL broker")
struct APITests {
    @Test("POST /exchanges answers 202 with a job id; the exchange is stored in ACCEPTED")
    func submit() async throws {
        try await withAPI { api in
            let response = try await api.call(.POST, "/exchanges", body: requestBody())
            #expect(response.status == 202)
            let jobID = try #require(response.json["jobId"] as? String)
            #expect(response.json["state"] as? String == "ACCEPTED")
            #expect(response.json["created"] as? Bool == true)
            #expect(response.headers.first(name: "Location") == "/exchanges/\(jobID)")
            let stored = try #require(try await api.service.store.get(jobID))
            #expect(stored.state == .accepted)
            #expect(stored.request.selection == .label(3))
        }
    }

    @Test("POST /exchange (singular) is the same endpoint")
    func submitSingular() async throws {
        try await withAPI { api in
            let first = try await api.call(.POST, "/exchange", body: requestBody())
            #expect(first.status == 202)
            let second = try await api.call(.POST, "/exchanges", body: requestBody())
            #expect(second.json["jobId"] as? String == first.json["jobId"] as? String)
            #expect(second.json["created"] as? Bool == false)
        }
    }

    @Test("the same POST twice makes one exchange: same job id, created false")
    func idempotentRetry() async throws {
        try await withAPI { api in
            let first = try await api.call(.POST, "/exchanges", body: requestBody())
            let second = try await api.call(.POST, "/exchanges", body: requestBody())
            #expect(first.status == 202)
            #expect(second.status == 202)
            #expect(first.json["jobId"] as? String != nil)
            #expect(second.json["jobId"] as? String == first.json["jobId"] as? String)
            #expect(second.json["created"] as? Bool == false)
            #expect(try await api.service.store.list().count == 1)

            // With a client key: same key → same exchange; another key → another exchange.
            let keyed = try await api.call(.POST, "/exchanges", body: requestBody(batch: 8), headers: [("Idempotency-Key", "k-1")])
            let again = try await api.call(.POST, "/exchanges", body: requestBody(batch: 8), headers: [("Idempotency-Key", "k-1")])
            let other = try await api.call(.POST, "/exchanges", body: requestBody(batch: 8), headers: [("Idempotency-Key", "k-2")])
            #expect(keyed.json["jobId"] as? String == again.json["jobId"] as? String)
            #expect(other.json["jobId"] as? String != keyed.json["jobId"] as? String)
            #expect(try await api.service.store.list().count == 3)
        }
    }

    @Test("the same Idempotency-Key with another body answers 409")
    func idempotencyConflict() async throws {
        try await withAPI { api in
            let first = try await api.call(.POST, "/exchanges", body: requestBody(), headers: [("Idempotency-Key", "same")])
            #expect(first.status == 202)
            let second = try await api.call(.POST, "/exchanges", body: requestBody(label: 4), headers: [("Idempotency-Key", "same")])
            #expect(second.status == 409)
            #expect(second.errorCode == "idempotencyConflict")
            #expect(second.headers.first(name: "Content-Type")?.hasPrefix("application/json") == true)
        }
    }

    static let invalidBodies: [(body: String, field: String)] = [
        (#"{"destinationCaseId": 2, "batchId": 1, "labelId": 3}"#, "sourceCaseId"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 0, "labelId": 3}"#, "batchId"),
        (#"{"sourceCaseId": 1, "destinationCaseId": "2", "batchId": 1, "labelId": 3}"#, "destinationCaseId"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1}"#, "labelId"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "labelId": 3, "folderId": 4}"#, "folderId"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "documentIds": [5, 5]}"#, "documentIds[1]"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "documentIds": []}"#, "documentIds"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "labelId": 3, "redactionsAs": "flatten"}"#, "redactionsAs"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "labelId": 3, "includeNatives": "yes"}"#, "includeNatives"),
        (#"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 1, "labelId": 3, "colour": "red"}"#, "colour"),
        (#"[1, 2]"#, "$"),
        (#"{"sourceCaseId": "#, "$"),
    ]

    @Test("validation errors answer 400 naming the field", arguments: invalidBodies)
    func validation(_ body: String, _ field: String) async throws {
        try await withAPI { api in
            let response = try await api.call(.POST, "/exchanges", body: body)
            #expect(response.status == 400)
            #expect(response.errorCode == "invalidRequest")
            #expect(response.errorField == field)
            #expect(try await api.service.store.list().isEmpty)
        }
    }

    @Test("an Idempotency-Key over 200 bytes answers 400 naming the header")
    func badIdempotencyKey() async throws {
        try await withAPI { api in
            let response = try await api.call(
                .POST, "/exchanges", body: requestBody(), headers: [("Idempotency-Key", String(repeating: "k", count: 201))])
            #expect(response.status == 400)
            #expect(response.errorField == "Idempotency-Key")
        }
    }

    @Test("without or with a wrong bearer token: 401 with WWW-Authenticate: Bearer, on every /exchanges route")
    func unauthorized() async throws {
        try await withAPI { api in
            for token in [nil, "wrong", testToken + "x", String(testToken.dropLast())] {
                for (method, path) in [(HTTPMethod.POST, "/exchanges"), (.GET, "/exchanges"), (.GET, "/exchanges/x"), (.DELETE, "/exchanges/x")] {
                    let response = try await api.call(method, path, body: method == .POST ? requestBody() : nil, token: token)
                    #expect(response.status == 401, "\(method) \(path) token \(token ?? "none")")
                    #expect(response.headers.first(name: "WWW-Authenticate")?.hasPrefix("Bearer") == true)
                    #expect(response.errorCode == "unauthorized")
                }
            }
            // Another scheme is refused too.
            var request = HTTPClientRequest(url: api.base + "/exchanges")
            request.headers.add(name: "Authorization", value: "Basic \(Data(testToken.utf8).base64EncodedString())")
            let basic = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(basic.status.code == 401)
            #expect(try await api.service.store.list().isEmpty)
        }
    }

    @Test("without tokens (--insecure-no-auth) the routes answer without a token")
    func noAuth() async throws {
        try await withAPI(tokens: nil) { api in
            let response = try await api.call(.POST, "/exchanges", body: requestBody(), token: nil)
            #expect(response.status == 202)
        }
    }

    @Test("a body above the limit answers 413; a non-JSON content type 415")
    func tooLargeAndMediaType() async throws {
        try await withAPI { api in
            let padding = String(repeating: " ", count: serviceTestSettings.maxBodyBytes)
            let large = try await api.call(.POST, "/exchanges", body: requestBody() + padding)
            #expect(large.status == 413)
            #expect(large.errorCode == "payloadTooLarge")
            let text = try await api.call(.POST, "/exchanges", body: requestBody(), contentType: "text/plain")
            #expect(text.status == 415)
            #expect(text.errorCode == "unsupportedMediaType")
            let withCharset = try await api.call(.POST, "/exchanges", body: requestBody(), contentType: "application/json; charset=utf-8")
            #expect(withCharset.status == 202)
        }
    }

    @Test("GET one exchange; unknown job id 404; unknown route 404, all JSON")
    func getOne() async throws {
        try await withAPI { api in
            let posted = try await api.call(
                .POST, "/exchanges",
                body: #"{"sourceCaseId": 41, "destinationCaseId": 42, "batchId": 7, "documentIds": [9, 8], "requiresAnnotations": true, "redactionsAs": "brand_in"}"#)
            let jobID = try #require(posted.json["jobId"] as? String)
            let response = try await api.call(.GET, "/exchanges/\(jobID)")
            #expect(response.status == 200)
            let json = response.json
            #expect(json["jobId"] as? String == jobID)
            #expect(json["state"] as? String == "ACCEPTED")
            #expect((json["step"] as? [String: Any])?["number"] as? Int == 1)
            #expect((json["step"] as? [String: Any])?["of"] as? Int == 7)
            let request = try #require(json["request"] as? [String: Any])
            #expect(request["documentIds"] as? [Int] == [9, 8])
            #expect(request["redactionsAs"] as? String == "brand_in")
            #expect(request["notesAs"] as? String == "layer")
            let documents = try #require(json["documents"] as? [String: Any])
            #expect(documents["copied"] as? Int == 0)
            let created = try #require(json["createdAt"] as? String)
            #expect(created.hasSuffix("Z"))
            #expect(try Date(created, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) <= Date())

            let unknown = try await api.call(.GET, "/exchanges/no-such-job")
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "notFound")
            let noRoute = try await api.call(.GET, "/nothing-here", token: nil)
            #expect(noRoute.status == 404)
            #expect(noRoute.errorCode == "notFound")
        }
    }

    @Test("GET /exchanges lists newest first, filtered by state and case, limited")
    func list() async throws {
        try await withAPI { api in
            var ids: [String] = []
            for (source, destination) in [(1, 2), (3, 4), (5, 2)] {
                let response = try await api.call(.POST, "/exchanges", body: requestBody(source: Int64(source), destination: Int64(destination)))
                ids.append(try #require(response.json["jobId"] as? String))
            }
            func jobs(_ query: String) async throws -> [String] {
                let response = try await api.call(.GET, "/exchanges" + query)
                #expect(response.status == 200)
                return (response.json["exchanges"] as? [[String: Any]] ?? []).compactMap { $0["jobId"] as? String }
            }
            #expect(Set(try await jobs("")) == Set(ids))
            #expect(Set(try await jobs("?caseId=2")) == [ids[0], ids[2]])
            #expect(try await jobs("?caseId=3") == [ids[1]])
            #expect(Set(try await jobs("?state=ACCEPTED")) == Set(ids))
            #expect(try await jobs("?state=FINISHED").isEmpty)
            #expect(try await jobs("?limit=1").count == 1)
            _ = try await api.call(.DELETE, "/exchanges/\(ids[1])")
            #expect(try await jobs("?state=TEARING_DOWN_CANCELLED") == [ids[1]])

            for (query, field) in [("?state=SLEEPING", "state"), ("?caseId=-1", "caseId"), ("?limit=0", "limit"), ("?limit=51", "limit")] {
                let response = try await api.call(.GET, "/exchanges" + query)
                #expect(response.status == 400, "\(query)")
                #expect(response.errorField == field)
            }
        }
    }

    @Test("DELETE cancels: 202 TEARING_DOWN(CANCELLED), the work loop tears it down to CANCELLED, then 409; unknown 404")
    func cancel() async throws {
        try await withAPI { api in
            let posted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(posted.json["jobId"] as? String)
            let loop = api.workLoop()
            let stop = StopSignal()
            // Run the lifecycle up to PROCESSING (the payload's messages wait in the queues).
            let processing = try await eventually(timeout: .seconds(30)) {
                _ = try await loop.workOnce(stop: stop)
                return try await api.service.store.get(jobID)?.state == .processing
            }
            #expect(processing)
            let running = try await api.call(.GET, "/exchanges/\(jobID)")
            #expect(running.json["state"] as? String == "PROCESSING")
            #expect((running.json["documents"] as? [String: Any])?["total"] as? Int == 3)
            #expect(((running.json["stages"] as? [String: Any])?["s3-copy"] as? [String: Any])?["total"] as? Int == 3)

            let cancelled = try await api.call(.DELETE, "/exchanges/\(jobID)")
            #expect(cancelled.status == 202)
            #expect(cancelled.json["state"] as? String == "TEARING_DOWN")
            #expect(cancelled.json["teardownTarget"] as? String == "CANCELLED")
            let done = try await eventually(timeout: .seconds(30)) {
                _ = try await loop.workOnce(stop: stop)
                return try await api.service.store.get(jobID)?.state == .cancelled
            }
            #expect(done)
            let final = try await api.call(.GET, "/exchanges/\(jobID)")
            #expect(final.json["state"] as? String == "CANCELLED")
            #expect(final.json["finishedAt"] as? String != nil)
            #expect(final.json["error"] as? String != nil)

            let again = try await api.call(.DELETE, "/exchanges/\(jobID)")
            #expect(again.status == 409)
            #expect(again.errorCode == "stateConflict")
            let unknown = try await api.call(.DELETE, "/exchanges/no-such-job")
            #expect(unknown.status == 404)
        }
    }

    @Test("POST /exchanges/{jobId}/retry: 409 until it ended; then 202 with the left-behind documents, retryOf shown, the same retry again; a client may not send retryOf")
    func retry() async throws {
        try await withAPI(copier: InMemoryCopier(count: 3, leftBehind: [12, 13])) { api in
            let posted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(posted.json["jobId"] as? String)
            let early = try await api.call(.POST, "/exchanges/\(jobID)/retry")
            #expect(early.status == 409 && early.errorCode == "stateConflict")
            #expect(try await api.call(.DELETE, "/exchanges/\(jobID)").status == 202)
            let loop = api.workLoop()
            let stop = StopSignal()
            let ended = try await eventually(timeout: .seconds(30)) {
                _ = try await loop.workOnce(stop: stop)
                return try await api.service.store.get(jobID)?.state == .cancelled
            }
            #expect(ended)

            let retried = try await api.call(.POST, "/exchanges/\(jobID)/retry")
            #expect(retried.status == 202)
            #expect(retried.json["created"] as? Bool == true && retried.json["retryOf"] as? String == jobID)
            #expect(retried.json["documents"] as? Int == 2)
            let retryID = try #require(retried.json["jobId"] as? String)
            #expect(retryID != jobID)
            #expect(retried.headers.first(name: "Location") == "/exchanges/\(retryID)")
            let shown = try await api.call(.GET, "/exchanges/\(retryID)")
            #expect(shown.json["retryOf"] as? String == jobID)
            let request = try #require(shown.json["request"] as? [String: Any])
            #expect(request["documentIds"] as? [Int] == [12, 13] && request["retryOf"] == nil && request["sourceCaseId"] as? Int == 41)
            #expect(try await api.call(.GET, "/exchanges/\(jobID)").json["retryOf"] == nil)

            let again = try await api.call(.POST, "/exchanges/\(jobID)/retry")
            #expect(again.status == 202 && again.json["created"] as? Bool == false && again.json["jobId"] as? String == retryID)
            // The retry itself has not ended: it cannot be retried yet.
            #expect(try await api.call(.POST, "/exchanges/\(retryID)/retry").status == 409)
            #expect(try await api.call(.POST, "/exchanges/no-such-job/retry").status == 404)
            let forged = try await api.call(.POST, "/exchanges", body: String(requestBody().dropLast()) + #", "retryOf": "\#(jobID)"}"#)
            #expect(forged.status == 400 && forged.errorField == "retryOf", "\(forged.body)")
        }
    }

    @Test("/healthz, /readyz and /metrics answer without a token")
    func probes() async throws {
        try await withAPI { api in
            let health = try await api.call(.GET, "/healthz", token: nil)
            #expect(health.status == 200)
            #expect(health.json["status"] as? String == "ok")
            let ready = try await api.call(.GET, "/readyz", token: nil)
            #expect(ready.status == 200)
            let metrics = try await api.call(.GET, "/metrics", token: nil)
            #expect(metrics.status == 200)
            #expect(metrics.headers.first(name: "Content-Type")?.hasPrefix("text/plain") == true)
            // The request metrics of the requests above are there.
            #expect(metrics.body.contains("http_server_request"))
        }
    }

    @Test("/readyz answers 503 when the broker does not answer")
    func notReady() async throws {
        try await withAPI { api in
            await api.broker.close()
            let ready = try await api.call(.GET, "/readyz", token: nil)
            #expect(ready.status == 503)
            #expect(ready.errorCode == "notReady")
        }
    }

    @Test("while the broker database is down the API answers 503 with Retry-After, and recovers after")
    func databaseDown() async throws {
        var settings = serviceTestSettings
        settings.retryAfter = .seconds(3)
        try await withAPI(settings: settings, restartable: true) { api in
            let submitted = try await api.call(.POST, "/exchanges", body: requestBody())
            #expect(submitted.status == 202)
            let jobID = submitted.json["jobId"] as? String ?? ""
            try await RestartablePostgres.stop()
            do {
                for (method, path) in [(HTTPMethod.GET, "/exchanges/\(jobID)"), (.GET, "/exchanges"), (.DELETE, "/exchanges/\(jobID)")] {
                    let answer = try await api.call(method, path)
                    #expect(answer.status == 503, "\(method) \(path): \(answer.body)")
                    #expect(answer.headers["Retry-After"].first == "3", "\(method) \(path)")
                    #expect(answer.errorCode == "unavailable")
                }
                let post = try await api.call(.POST, "/exchanges", body: requestBody(batch: 8))
                #expect(post.status == 503)
                #expect(post.headers["Retry-After"].first == "3")
            } catch {
                try await RestartablePostgres.start()
                throw error
            }
            try await RestartablePostgres.start()
            // Back up: the same requests answer normally (the pool reconnects).
            var answer = try await api.call(.GET, "/exchanges/\(jobID)")
            let deadline = ContinuousClock.now + .seconds(20)
            while answer.status == 503, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                answer = try await api.call(.GET, "/exchanges/\(jobID)")
            }
            #expect(answer.status == 200)
        }
    }

    @Test("a broker error that is not a connection failure stays 500")
    func realBugsStay500() {
        let refused = DatabaseError(.connectionFailed, message: "connection refused")
        let restarting = DatabaseError(.queryFailed, sqlState: "57P01", message: "terminating connection due to administrator command")
        let syntax = DatabaseError(.queryFailed, sqlState: "42601", message: "syntax error")
        #expect(Handler.isDatabaseUnavailable(BrokerError(.database, refused.description, underlying: refused)))
        #expect(Handler.isDatabaseUnavailable(BrokerError(.database, restarting.description, underlying: restarting)))
        #expect(Handler.isDatabaseUnavailable(refused))
        #expect(!Handler.isDatabaseUnavailable(BrokerError(.database, syntax.description, underlying: syntax)))
        #expect(!Handler.isDatabaseUnavailable(syntax))
        #expect(!Handler.isDatabaseUnavailable(BrokerError(.invalidName, "bad name")))
    }

    @Test("an undeclared method on a known path answers 405 with Allow; an unknown path 404")
    func methodNotAllowed() async throws {
        try await withAPI { api in
            for (method, path, allow) in [
                (HTTPMethod.PUT, "/exchanges", "POST, GET"), (.DELETE, "/exchanges", "POST, GET"), (.PATCH, "/exchanges/some-job", "GET, DELETE"),
                (.GET, "/exchanges/some-job/cancel", "POST"), (.POST, "/healthz", "GET"), (.DELETE, "/openapi.yaml", "GET"),
            ] {
                let answer = try await api.call(method, path)
                #expect(answer.status == 405, "\(method) \(path)")
                #expect(answer.headers["Allow"].first == allow, "\(method) \(path)")
                #expect(answer.errorCode == "methodNotAllowed")
            }
            let unknown = try await api.call(.GET, "/no-such-route")
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "notFound")
        }
    }

    @Test("POST /exchanges/{jobId}/cancel cancels like DELETE; again while tearing down 202; unknown 404")
    func cancelByPost() async throws {
        try await withAPI { api in
            let submitted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(submitted.json["jobId"] as? String)
            let cancelled = try await api.call(.POST, "/exchanges/\(jobID)/cancel")
            #expect(cancelled.status == 202)
            #expect(cancelled.json["state"] as? String == "TEARING_DOWN")
            #expect(cancelled.json["teardownTarget"] as? String == "CANCELLED")
            let again = try await api.call(.DELETE, "/exchanges/\(jobID)")
            #expect(again.status == 202)
            #expect(try await api.call(.POST, "/exchanges/no-such-job/cancel").status == 404)
        }
    }

    @Test("an empty list filter (state=, caseId=, limit=) answers 400 naming it, as the schema says")
    func emptyListFilters() async throws {
        try await withAPI { api in
            for name in ["state", "caseId", "limit"] {
                let answer = try await api.call(.GET, "/exchanges?\(name)=")
                #expect(answer.status == 400, "\(name)=")
                #expect(answer.errorField == name)
            }
        }
    }
}
