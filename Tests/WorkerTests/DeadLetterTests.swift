import ExchangerTestSupport
import Broker
import DeadLetterProcessor
import ExchangerEvents
import Foundation
import Logging
import ProcessSupport
import Testing
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// A document task as the orchestrator sends it.
func sampleTask(document: Int64 = 1001, jobID: String = "job-dlq") -> DocumentTask {
    DocumentTask(
        jobID: jobID, sourceCaseID: 41, caseID: 42, batchID: 7, sourceDocumentID: document - 1000, documentID: document,
        files: [DocumentFile(name: "doc.pdf", kind: .rendition)], routes: [DocumentTask.Route.uploader: "up-q"])
}

/// The events of one type in the event log.
func loggedEvents(_ broker: Broker, type: EventType) async throws -> [EventEnvelope] {
    let rows = try await broker.transaction { tx in try await tx.query("SELECT body FROM broker_events ORDER BY seq") }
    return rows.compactMap { $0["body"].string }.compactMap { try? EventEnvelope.decode($0) }.filter { $0.eventType == type }
}

/// A received message as a handler sees it.
func workerMessage(_ broker: Broker, _ message: ReceivedMessage) async throws -> WorkerMessage {
    let queue = try #require(try await broker.queue(named: message.queue))
    return WorkerMessage(received: message, body: message.body, queue: queue, logger: Logger(label: "test"))
}

/// Runs a handler on a message twice (a re-delivery), committing its events as the runtime does.
func handleTwice(_ handler: DeadLetterHandler, _ message: WorkerMessage) async throws -> [HandlerOutcome] {
    var outcomes: [HandlerOutcome] = []
    for _ in 0..<2 {
        let outcome = try await handler.handle(message)
        if case .success(let effects) = outcome {
            for event in effects.events { try await handler.broker.publish(try event.topicMessage()) }
        }
        outcomes.append(outcome)
    }
    return outcomes
}

/// Sends a task to `queue` and dead-letters it the way the worker runtime does.
func sendWrappedDeadLetter(_ broker: Broker, queue: String, task: DocumentTask, error: String = "boom", reason: String = "permanent") async throws {
    try await broker.send(queue, OutgoingMessage(
        body: try EventCoding.string(task), attributes: ["jobId": .string(task.jobID), "documentId": .string(String(task.documentID))]))
    let received = try #require(try await broker.receive(queue).first)
    let info = try #require(try await broker.queue(named: queue))
    let envelope = DeadLetterEnvelope(message: received, queue: info, error: error, reason: reason)
    let target = try #require(info.attributes.deadLetterQueue)
    try await broker.transaction { tx in
        try await tx.send(target, try envelope.outgoing())
        try await tx.delete(queue, received.receipt)
    }
}

/// A handler that fails every message permanently.
struct FailingHandler: MessageHandler {
    func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        throw WorkerError.permanent("cannot do this")
    }
}

/// The broker creates the DLQ; tests then make source queues that use it.
func prepareDeadLetters(_ broker: Broker) async throws {
    try await DeadLetterHandler.prepare(broker: broker, settings: DeadLetterSettings(queue: DeadLetterSettings.defaultQueue), logger: Logger(label: "test"))
}

@Suite("Dead-letter processor")
struct DeadLetterTests {
    @Test("a wrapped dead letter is recorded once and publishes its mapped error event once", arguments: Backend.allCases)
    func wrapped(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("s3q", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", exchangeID: "job-dlq", program: "s3-copy"))
            try await sendWrappedDeadLetter(broker, queue: "s3q", task: sampleTask(), error: "NoSuchKey: doc.pdf")
            let dead = try #require(try await broker.receive("exch-dlq").first)
            let handler = DeadLetterHandler(broker: broker)
            let outcomes = try await handleTwice(handler, try await workerMessage(broker, dead))
            #expect(outcomes.count == 2)

            let records = try await handler.store.list()
            #expect(records.count == 1)
            let record = try #require(records.first)
            #expect(record.queue == "s3q" && record.program == "s3-copy" && record.exchangeID == "job-dlq")
            #expect(record.jobID == "job-dlq" && record.caseID == 42 && record.sourceCaseID == 41 && record.batchID == 7 && record.documentID == 1001)
            #expect(record.reason == "permanent" && record.error == "NoSuchKey: doc.pdf" && record.receiveCount == 1)
            #expect(try DocumentTask.decode(record.body) == sampleTask())
            #expect(record.attributes["jobId"] == .string("job-dlq"))
            #expect(record.redrivenAt == nil && record.redriveCount == 0)

            let events = try await loggedEvents(broker, type: .s3DocCopied)
            #expect(events.count == 1)
            let event = try #require(events.first)
            let detail = try event.detail(as: ProcessingErrorDetail.self)
            #expect(detail.status == "ERROR" && detail.queue == "s3q" && detail.program == "s3-copy" && detail.reason == "permanent")
            #expect(detail.messageID == record.messageID)
            #expect(event.jobID == "job-dlq" && event.caseID == 42 && event.batchID == 7 && event.documentID == 1001)
            #expect(event.source == "exchanger-dlq")
            #expect(event.eventID == EventID.deterministic(jobID: "job-dlq", type: .s3DocCopied, documentID: 1001, qualifier: record.messageID))
        }
    }

    @Test("a message the broker moved after its max receive count is recorded as leaseExpired", arguments: Backend.allCases)
    func raw(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("upq", attributes: QueueAttributes(maxReceiveCount: 1, deadLetterQueue: "exch-dlq", program: "uploader"))
            let task = sampleTask(document: 1002)
            try await broker.send("upq", OutgoingMessage(body: try EventCoding.string(task), attributes: ["jobId": .string(task.jobID)]))
            // Received once and never acknowledged: the lease runs out, the next receive moves it.
            #expect(try await broker.receive("upq", visibilityTimeout: .milliseconds(100)).count == 1)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await broker.receive("upq", visibilityTimeout: .milliseconds(100)).isEmpty)
            let dead = try #require(try await broker.receive("exch-dlq", wait: .seconds(2)).first)
            #expect(dead.sourceQueue == "upq")

            let handler = DeadLetterHandler(broker: broker)
            _ = try await handleTwice(handler, try await workerMessage(broker, dead))
            let records = try await handler.store.list(DeadLetterFilter(queue: "upq"))
            #expect(records.count == 1)
            let record = try #require(records.first)
            #expect(record.reason == "leaseExpired" && record.program == "uploader" && record.receiveCount == 1)
            #expect(record.error == DeadLetter.leaseExpiredError)
            #expect(record.documentID == 1002 && record.jobID == task.jobID)
            let events = try await loggedEvents(broker, type: .uploaderFinished)
            #expect(events.count == 1)
            #expect(try events.first?.detail(as: ProcessingErrorDetail.self).reason == "leaseExpired")
        }
    }

    @Test("a message that outlives its queue's retention is dead-lettered as expired, not deleted", arguments: Backend.allCases)
    func expired(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue(
                "oldq", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", retention: .seconds(60), program: "uploader"))
            let task = sampleTask(document: 1003)
            try await broker.send("oldq", OutgoingMessage(body: try EventCoding.string(task), attributes: ["jobId": .string(task.jobID)]))
            try await broker.transaction { transaction in
                let sql = transaction.dialect == .postgres
                    ? "UPDATE broker_messages SET sent_at = now() - interval '2 minutes', visible_at = now() - interval '2 minutes'"
                    : "UPDATE broker_messages SET sent_at = sent_at - 120000, visible_at = visible_at - 120000"
                try await transaction.query(sql)
            }
            #expect(try await broker.purgeExpired() == 1)
            #expect(try await broker.counters("oldq").total == 0)
            let dead = try #require(try await broker.receive("exch-dlq").first)
            let expectedBody = try EventCoding.string(task)
            #expect(dead.sourceQueue == "oldq" && dead.body == expectedBody)

            let handler = DeadLetterHandler(broker: broker)
            _ = try await handleTwice(handler, try await workerMessage(broker, dead))
            let record = try #require(try await handler.store.list(DeadLetterFilter(queue: "oldq")).first)
            #expect(record.reason == "expired" && record.error.contains("retention (60 s)"), "\(record.error)")
            #expect(record.documentID == 1003 && record.jobID == task.jobID && record.attributes[Broker.expiredAttribute] == nil)
            let events = try await loggedEvents(broker, type: .uploaderFinished)
            let reason = try events.first?.detail(as: ProcessingErrorDetail.self).reason
            #expect(events.count == 1 && reason == "expired")

            // A dead-letter queue's own expired messages have nowhere to go: they are deleted.
            try await broker.send("exch-dlq", OutgoingMessage(body: "{}"))
            try await broker.transaction { transaction in
                let sql = transaction.dialect == .postgres
                    ? "UPDATE broker_messages SET sent_at = now() - interval '400 days', visible_at = now() - interval '400 days'"
                    : "UPDATE broker_messages SET sent_at = sent_at - 34560000000, visible_at = visible_at - 34560000000"
                try await transaction.query(sql)
            }
            #expect(try await broker.purgeExpired() >= 1)
            #expect(try await broker.counters("exch-dlq").total == 0)
        }
    }

    @Test("a program without an error event is recorded and publishes nothing", arguments: Backend.allCases)
    func unknownProgram(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("odd", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "status-update"))
            try await sendWrappedDeadLetter(broker, queue: "odd", task: sampleTask())
            let dead = try #require(try await broker.receive("exch-dlq").first)
            let handler = DeadLetterHandler(broker: broker)
            let outcome = try await handler.handle(try await workerMessage(broker, dead))
            #expect(outcome == .success)
            #expect(try await handler.store.list().count == 1)
            let events = try await broker.transaction { tx in try await tx.query("SELECT event_id FROM broker_events") }
            #expect(events.isEmpty)
        }
    }

    @Test("runtime → exch-dlq → processor: an orchestrator failure becomes EXCHANGER_FAILED, and a duplicate is recorded once",
          arguments: Backend.allCases)
    func throughTheRuntime(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("orch", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "orchestrator"))
            let event = try EventEnvelope(
                type: .payloadConstructionFinished, source: "exchanger-orchestrator", jobID: "job-o", caseID: 42, sourceCaseID: 41,
                batchID: 7, detail: ExchangeStatusDetail())
            try await broker.send("orch", OutgoingMessage(body: try EventCoding.string(event), attributes: event.filterAttributes))
            try await withWorker(broker, queue: "orch", program: "orchestrator", handler: FailingHandler()) {
                let moved = try await eventually { try await broker.counters("exch-dlq").total == 1 }
                #expect(moved)
            }
            // The same dead letter twice in the queue (as if delivered again).
            let copy = try #require(try await broker.receive("exch-dlq").first)
            try await broker.changeVisibility("exch-dlq", copy.receipt, timeout: .zero)
            try await broker.send("exch-dlq", OutgoingMessage(body: copy.body, attributes: copy.attributes))
            let handler = DeadLetterHandler(broker: broker)
            try await withWorker(broker, queue: "exch-dlq", program: "dlq", handler: handler) {
                let drained = try await eventually { try await broker.counters("exch-dlq").total == 0 }
                #expect(drained)
            }
            let records = try await handler.store.list(DeadLetterFilter(jobID: "job-o"))
            #expect(records.count == 1)
            #expect(records.first?.error.contains("cannot do this") == true)
            let failed = try await loggedEvents(broker, type: .exchangerFailed)
            #expect(failed.count == 1)
            #expect(failed.first?.caseID == 42 && failed.first?.batchID == 7)
            #expect(try failed.first?.detail(as: ProcessingErrorDetail.self).status == "ERROR")
        }
    }

    @Test("the store redrives to the original queue, refuses a sealed target, and filters", arguments: Backend.allCases)
    func storeRedrive(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("s3q", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "s3-copy"))
            try await broker.createQueue("sealed-q")
            try await broker.seal(["sealed-q"])
            for document: Int64 in [1001, 1002] { try await sendWrappedDeadLetter(broker, queue: "s3q", task: sampleTask(document: document)) }
            let handler = DeadLetterHandler(broker: broker)
            for message in try await broker.receive("exch-dlq", maxMessages: 10) { _ = try await handler.handle(try await workerMessage(broker, message)) }
            let records = try await handler.store.list()
            #expect(records.map(\.documentID) == [1002, 1001])

            let refused = try await handler.store.redrive(ids: [records[0].id], to: "sealed-q")
            #expect(refused.first?.succeeded == false)
            #expect(refused.first?.error?.contains("queueSealed") == true)
            #expect(try await handler.store.get(id: records[0].id)?.redrivenAt == nil)
            let missing = try await handler.store.redrive(ids: [records[0].id, 987_654], to: "no-such-queue")
            #expect(missing.allSatisfy { !$0.succeeded })
            // The original queue gone (the exchange ended and was torn down): the answer says what to do.
            try await broker.deleteQueue("s3q")
            let ended = try await handler.store.redrive(ids: [records[0].id])
            #expect(ended.first?.error?.contains("the queue was removed when exchange job-dlq ended") == true, "\(ended)")
            #expect(ended.first?.error?.contains("exchanger retry job-dlq") == true, "\(ended)")
            #expect(ended.first?.error?.contains("source document") == true, "\(ended)")
            try await broker.createQueue("s3q", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "s3-copy"))

            let done = try await handler.store.redriveAll(DeadLetterFilter(queue: "s3q"))
            #expect(done.count == 2 && done.allSatisfy(\.succeeded))
            let back = try await broker.receive("s3q", maxMessages: 10)
            #expect(back.count == 2)
            #expect(Set(try back.map { try DocumentTask.decode($0.body).documentID }) == [1001, 1002])
            #expect(back.allSatisfy { $0.attributes[DeadLetterEnvelope.attributeName] == nil && $0.attributes["jobId"] == .string("job-dlq") })
            let after = try #require(try await handler.store.get(id: records[0].id))
            #expect(after.redrivenAt != nil && after.redriveCount == 1)
            #expect(try await handler.store.redriveAll().isEmpty)
            #expect(try await handler.store.list(DeadLetterFilter(onlyPending: true)).isEmpty)
            #expect(try await handler.store.list(DeadLetterFilter(jobID: "other")).isEmpty)
        }
    }

    @Test("exchanger dlq list, show and redrive (a sealed target fails and keeps the record)", arguments: Backend.allCases)
    func commandLine(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("s3q", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "s3-copy"))
            try await broker.createQueue("parked")
            try await broker.seal(["parked"])
            try await sendWrappedDeadLetter(broker, queue: "s3q", task: sampleTask(), error: "SlowDown\nretry later")
            let handler = DeadLetterHandler(broker: broker)
            let message = try #require(try await broker.receive("exch-dlq").first)
            _ = try await handler.handle(try await workerMessage(broker, message))
            let id = try #require(try await handler.store.list().first?.id)

            let table = try await runExchanger(["dlq", "list", "--database", url])
            #expect(table.status == 0, "\(table.output)")
            #expect(table.output.contains("s3q") && table.output.contains("s3-copy") && table.output.contains("SlowDown retry later"))
            let json = try await runExchanger(["dlq", "list", "--database", url, "--job", "job-dlq", "--json"])
            let lines = receivedLines(json.output)
            #expect(lines.count == 1)
            #expect(lines.first?["id"] as? Int == Int(id))
            #expect(lines.first?["documentId"] as? Int == 1001)
            #expect(try await runExchanger(["dlq", "list", "--database", url, "--queue", "other", "--json"]).output.isEmpty)

            let show = try await runExchanger(["dlq", "show", String(id), "--database", url])
            #expect(show.status == 0)
            #expect(show.output.contains("\"documentId\" : 1001"))  // pretty-printed body
            #expect(show.output.contains("SlowDown"))
            #expect(try await runExchanger(["dlq", "show", "424242", "--database", url]).status != 0)

            let sealed = try await runExchanger(["dlq", "redrive", String(id), "--to", "parked", "--database", url])
            #expect(sealed.status != 0)
            #expect(sealed.output.contains("not redriven"))
            #expect(try await handler.store.get(id: id)?.redrivenAt == nil)
            #expect(try await broker.counters("parked").total == 0)

            let redrive = try await runExchanger(["dlq", "redrive", String(id), "--database", url])
            #expect(redrive.status == 0, "\(redrive.output)")
            #expect(redrive.output.contains("redriven to s3q"))
            let back = try #require(try await broker.receive("s3q").first)
            #expect(try DocumentTask.decode(back.body) == sampleTask())
            #expect(try await handler.store.get(id: id)?.redriveCount == 1)
            // --all only picks records never redriven.
            let all = try await runExchanger(["dlq", "redrive", "--all", "--database", url])
            #expect(all.status == 0)
            #expect(all.output.contains("redrove 0 of 0"))
        }
    }

    @Test("the exchanger-dlq executable records dead letters and exits 0 on SIGTERM", arguments: Backend.allCases)
    func executable(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await prepareDeadLetters(broker)
            try await broker.createQueue("pre", attributes: QueueAttributes(deadLetterQueue: "exch-dlq", program: "pre-uploader"))
            try await sendWrappedDeadLetter(broker, queue: "pre", task: sampleTask(document: 1005), error: "engine said 422")
            let child = try ChildProcess(
                executable: TestEnvironment.executable("exchanger-dlq"), arguments: ["--database", url, "--wait", "1"])
            let output = Task { try await child.readAll() }
            let store = DeadLetterStore(broker: broker)
            let recorded: Bool
            do {
                recorded = try await eventually(timeout: .seconds(20)) { try await store.list(DeadLetterFilter(queue: "pre")).count == 1 }
            } catch {
                child.signal(SIGKILL)
                _ = try? await child.wait()
                throw error
            }
            #expect(recorded)
            #expect(try await eventually { try await loggedEvents(broker, type: .preUploaderFinished).count == 1 })
            child.signal(SIGTERM)
            let status = try await child.wait()
            let log = try await output.value
            #expect(status == 0, "exchanger-dlq output:\n\(log)")
            #expect(log.contains("dead letter recorded"))
        }
    }
}
