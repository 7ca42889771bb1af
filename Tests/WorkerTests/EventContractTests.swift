import ExchangerTestSupport
import Broker
import ExchangerEvents
import Foundation
import ObjectStorage
import Testing
@testable import WorkerRuntime

@Suite struct EventContractTests {
    @Test func envelopeRoundTripsWithItsWireNames() throws {
        let time = Date(timeIntervalSince1970: 1_764_072_000.125)
        let event = try EventEnvelope(
            type: .documentCopied, source: "exchanger-s3-copy", jobID: "job-1", caseID: 42, sourceCaseID: 41, batchID: 7,
            documentID: 1001, correlationID: "corr-1",
            detail: FileCopiedDetail(sourceDocumentID: 9, exhibitID: 3, fileName: "a.pdf", sourceKey: "s", destinationKey: "d", bytes: 12),
            time: time)
        let body = try EventCoding.string(event)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(Set(object.keys) == [
            "eventId", "eventType", "version", "source", "time", "jobId", "caseId", "sourceCaseId", "batchId", "documentId",
            "correlationId", "detail",
        ])
        #expect(object["eventType"] as? String == "DOCUMENT_COPIED")
        #expect(object["caseId"] as? Int == 42)
        #expect(object["time"] as? String == "2025-11-25T12:00:00.125Z")
        let detail = try #require(object["detail"] as? [String: Any])
        #expect(detail["sourceDocumentId"] as? Int == 9)
        #expect(detail["bytes"] as? Int == 12)

        let decoded = try EventEnvelope.decode(body)
        #expect(decoded == event)
        #expect(try decoded.detail(as: FileCopiedDetail.self).fileName == "a.pdf")
    }

    @Test func perDocumentFactsHaveDeterministicIDs() throws {
        func make(_ document: Int64, _ type: EventType = .documentCopied, job: String = "job-1", qualifier: String? = nil) throws -> String {
            try EventEnvelope(type: type, source: "x", jobID: job, documentID: document, detail: ExchangeStatusDetail(), qualifier: qualifier).eventID
        }
        #expect(try make(1) == make(1))
        #expect(try make(1) != make(2))
        #expect(try make(1) != make(1, .documentNotFound))
        #expect(try make(1) != make(1, job: "job-2"))
        #expect(try make(1, .nativeDocumentCopied, qualifier: "a.doc") != make(1, .nativeDocumentCopied, qualifier: "b.doc"))
        #expect(try make(1).hasPrefix("evt-"))
        // No job: a random id each time.
        let a = try EventEnvelope(type: .documentCopied, source: "x", jobID: nil, detail: ExchangeStatusDetail()).eventID
        let b = try EventEnvelope(type: .documentCopied, source: "x", jobID: nil, detail: ExchangeStatusDetail()).eventID
        #expect(a != b)
    }

    @Test func filterAttributesAreStrings() throws {
        let event = try EventEnvelope(
            type: .exchangerFinished, source: "exchanger-orchestrator", jobID: "j", caseID: 42, batchID: 7, detail: ExchangeStatusDetail())
        #expect(event.filterAttributes == [
            "eventType": .string("EXCHANGER_FINISHED"), "source": .string("exchanger-orchestrator"), "jobId": .string("j"),
            "caseId": .string("42"), "batchId": .string("7"),
        ])
        let policy = try FilterPolicy(json: #"{"eventType":["EXCHANGER_FINISHED"],"caseId":["42"],"batchId":["7"]}"#)
        #expect(policy.matches(event.filterAttributes))
    }

    @Test(arguments: [
        ("", EventError.Code.malformed),
        ("garbage", .malformed),
        (#"{"eventType":"X"}"#, .malformed),
        (#"{"eventId":"e","eventType":"X","version":2,"source":"s","time":"2026-01-01T00:00:00Z","detail":{}}"#, .unsupportedVersion),
        (#"{"eventId":"e","eventType":"X","version":1,"source":"s","time":"yesterday","detail":{}}"#, .malformed),
    ])
    func badEnvelopesAreRejectedWithTheReason(body: String, code: EventError.Code) {
        #expect(throws: EventError.self) { try EventEnvelope.decode(body) }
        do {
            _ = try EventEnvelope.decode(body)
        } catch {
            #expect(error.code == code)
        }
    }

    @Test func documentTaskValidation() throws {
        let task = DocumentTask(
            jobID: "j", sourceCaseID: 1, caseID: 2, batchID: 3, sourceDocumentID: 4, documentID: 5,
            files: [DocumentFile(name: "4.pdf", kind: .rendition)], routes: ["uploader": "q"])
        let body = try EventCoding.string(task)
        #expect(try DocumentTask.decode(body) == task)
        #expect(task.messageAttributes["documentId"] == .string("5"))

        var bad = task
        bad.documentID = 0
        #expect(throws: EventError.self) { try DocumentTask.decode(try EventCoding.string(bad)) }
        var newer = task
        newer.version = 99
        let newerBody = try EventCoding.string(newer)
        do {
            _ = try DocumentTask.decode(newerBody)
            Issue.record("a newer version must be refused")
        } catch {
            #expect(error.code == .unsupportedVersion)
        }
        #expect(throws: EventError.self) { try DocumentTask.decode(#"{"jobId":"j"}"#) }
    }

    @Test func everyReferenceEventNameIsSpelledExactly() {
        let names = Set(EventType.known.map(\.rawValue))
        for name in [
            "EXCHANGER_INITIATED", "DOCUMENT_COPIED", "NATIVE_DOCUMENT_COPIED", "DOCUMENT_NOT_FOUND", "DOCUMENT_PRE_PROCESSED",
            "DB_COPY_FINISHED", "PAYLOAD_CONSTRUCTION_FINISHED", "EXCHANGER_DELETE_INITIATED", "EXCHANGER_FINISHED",
            "EXCHANGER_FAILED", "S3_DOC_COPIED", "PRE_UPLOADER_FINISHED", "DOCUMENT_UPLOADED",
        ] {
            #expect(names.contains(name), "\(name)")
        }
    }
}

@Suite struct RuntimeUnitTests {
    @Test func classification() {
        #expect(WorkerError.classify(WorkerError.permanent("x")) == .permanent)
        #expect(WorkerError.classify(WorkerError.silent("x")) == .silent)
        #expect(WorkerError.classify(WorkerError.recoverable("x")) == .recoverable)
        #expect(WorkerError.classify(EventError(.malformed, "x")) == .permanent)
        #expect(WorkerError.classify(ObjectStorageError(.notFound, "x")) == .permanent)
        #expect(WorkerError.classify(ObjectStorageError(.transient, "x")) == .recoverable)
        #expect(WorkerError.classify(ObjectStorageError(.accessDenied, "x")) == .recoverable)
        #expect(WorkerError.classify(ObjectStorageError(.invalidKey, "x")) == .permanent)
        #expect(WorkerError.classify(BrokerError(.messageTooLarge, "x")) == .permanent)
        #expect(WorkerError.classify(BrokerError(.queueNotFound, "x")) == .recoverable)
        #expect(WorkerError.classify(CancellationError()) == .recoverable)
        struct Unknown: Error {}
        #expect(WorkerError.classify(Unknown()) == .recoverable)
    }

    /// A generator that always returns the same word, to reach the ends of the jitter range.
    struct Fixed: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 { value }
    }

    @Test func backoffIsCappedExponentialWithFullJitter() {
        let backoff = RetryBackoff(base: .seconds(2), cap: .seconds(60), minimum: .seconds(1))
        #expect(backoff.ceiling(attempt: 1) == .seconds(2))
        #expect(backoff.ceiling(attempt: 2) == .seconds(4))
        #expect(backoff.ceiling(attempt: 5) == .seconds(32))
        #expect(backoff.ceiling(attempt: 6) == .seconds(60))
        #expect(backoff.ceiling(attempt: 1000) == .seconds(60))
        var low = Fixed(value: 0)
        var high = Fixed(value: .max)
        for attempt in 1...12 {
            let shortest = backoff.delay(attempt: attempt, using: &low)
            let longest = backoff.delay(attempt: attempt, using: &high)
            #expect(shortest >= .seconds(1), "never faster than the minimum")
            #expect(longest <= backoff.ceiling(attempt: attempt))
            #expect(shortest < longest, "jitter spreads attempt \(attempt)")
        }
        var system = SystemRandomNumberGenerator()
        let draws = Set((0..<50).map { _ in backoff.delay(attempt: 4, using: &system) })
        #expect(draws.count > 10)
    }

    @Test func unboundRotationVisitsEveryQueueAndNoticesAnEmptyRound() {
        var rotation = QueueRotation()
        #expect(rotation.next() == nil)
        rotation.replace(with: ["b", "a", "c"])
        #expect([rotation.next(), rotation.next(), rotation.next(), rotation.next()] == ["a", "b", "c", "a"])
        #expect(!rotation.roundWasEmpty)
        rotation.record(empty: true)
        rotation.record(empty: true)
        #expect(!rotation.roundWasEmpty)
        rotation.record(empty: true)
        #expect(rotation.roundWasEmpty)
        rotation.record(empty: false)
        #expect(!rotation.roundWasEmpty)
        rotation.remove("b")
        #expect(rotation.names == ["a", "c"])
    }

    @Test func workerOptionsReadTheEnvironmentAndRejectBadValues() throws {
        var options = try WorkerOptions.parse(["--queue", "q"])
        let configuration = try options.configuration(
            program: "s3-copy",
            ["EXCHANGER_WORKER_BATCH_SIZE": "50", "EXCHANGER_WORKER_CONCURRENCY": "4", "EXCHANGER_WORKER_WAIT_SECONDS": "2.5"])
        #expect(configuration.source == .queue("q"))
        #expect(configuration.batchSize == 50)
        #expect(configuration.concurrency == 4)
        #expect(configuration.wait == .milliseconds(2500))
        #expect(throws: (any Error).self) { try options.configuration(program: "x", ["EXCHANGER_WORKER_BATCH_SIZE": "lots"]) }
        options.program = "s3-copy"
        #expect(throws: (any Error).self) { try options.configuration(program: "x", [:]) }
        let unset = try WorkerOptions.parse([])
        #expect(throws: (any Error).self) { try unset.configuration(program: "x", [:]) }
        #expect(try unset.configuration(program: "x", defaultQueue: "exch-dlq", [:]).source == .queue("exch-dlq"))
    }
}
