import ExchangerTestSupport
import Broker
import ConcurrencySupport
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import WorkerRuntime

/// What the scripted handler does with a message, by its body's `mode`.
struct Script: Codable {
    var n: Int
    var mode: String
    var pad: String?
}

/// A handler whose behaviour the message body chooses; counts attempts per message.
final class ScriptedHandler: MessageHandler {
    let attempts = LockedBox([Int: Int]())
    let bodies = LockedBox([Int: String]())
    let next: String?
    let slow: Duration

    init(next: String? = nil, slow: Duration = .seconds(1)) {
        self.next = next
        self.slow = slow
    }

    func attemptsOf(_ n: Int) -> Int { attempts.withLock { $0[n] ?? 0 } }

    func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let script = try EventCoding.decode(Script.self, from: message.body)
        let attempt = attempts.withLock { counts -> Int in
            counts[script.n, default: 0] += 1
            return counts[script.n] ?? 0
        }
        bodies.withLock { $0[script.n] = message.body }
        let event = try EventEnvelope(type: .documentCopied, source: "test", jobID: "job", documentID: Int64(script.n), detail: ExchangeStatusDetail())
        var messages: [QueuedMessage] = []
        if let next {
            let body = script.mode == "big-output" ? String(repeating: "y", count: 3000) : "{\"n\":\(script.n)}"
            messages.append(QueuedMessage(queue: next, OutgoingMessage(body: body)))
        }
        switch script.mode {
        case "permanent": throw WorkerError.permanent("poison \(script.n)")
        case "silent": throw WorkerError.silent("done before")
        case "recoverable-once" where attempt == 1: throw WorkerError.recoverable("flaky \(script.n)")
        case "recoverable-always": throw WorkerError.recoverable("always down \(script.n)")
        case "garbage-in-handler": _ = try DocumentTask.decode("not json")
        case "slow": try await Task.sleep(for: slow)
        default: break
        }
        return .success(Effects(events: [event], messages: messages))
    }
}

func script(_ n: Int, _ mode: String, pad: Int = 0) throws -> OutgoingMessage {
    OutgoingMessage(body: try EventCoding.string(Script(n: n, mode: mode, pad: pad > 0 ? String(repeating: "x", count: pad) : nil)))
}

/// Event ids and types in the broker's event log.
func eventLog(_ broker: Broker) async throws -> [(id: String, type: String)] {
    let rows = try await broker.transaction { tx in try await tx.query("SELECT event_id, body FROM broker_events ORDER BY seq") }
    return try rows.map { row in
        let body = try row.require("body", \.string)
        return (try row.require("event_id", \.string), try EventEnvelope.decode(body).eventType.rawValue)
    }
}

func testConfiguration(_ queue: String, batch: Int = 20, concurrency: Int = 4) -> WorkerConfiguration {
    var configuration = WorkerConfiguration(source: .queue(queue), program: "test")
    configuration.batchSize = batch
    configuration.concurrency = concurrency
    configuration.wait = .milliseconds(200)
    configuration.backoff = RetryBackoff(base: .milliseconds(200), cap: .milliseconds(400), minimum: .milliseconds(100))
    return configuration
}

/// Runs `worker` in the background until `condition` holds, then stops it and waits for it.
func runWorker(_ worker: Worker, until condition: @escaping @Sendable () async throws -> Bool, timeout: Duration = .seconds(20)) async throws -> Bool {
    let running = Task { try await worker.run() }
    let held = try await eventually(timeout: timeout, condition)
    worker.requestStop()
    try await running.value
    return held
}

@Suite(.serialized) struct WorkerRuntimeTests {
    @Test(arguments: Backend.allCases)
    func everyMessageEndsItsOwnWayAndNeighboursAreUnaffected(_ backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("work-dlq")
            try await broker.createQueue("next")
            try await broker.createQueue("work", attributes: QueueAttributes(visibilityTimeout: .seconds(5), maxReceiveCount: 3, deadLetterQueue: "work-dlq"))
            var messages = try (0..<10).map { try script($0, "ok") }
            messages += [try script(100, "permanent"), try script(101, "silent"), try script(102, "recoverable-once"),
                         try script(103, "recoverable-always"), try script(104, "garbage-in-handler"), OutgoingMessage(body: "not json at all")]
            _ = try await broker.sendBatch("work", messages)

            let handler = ScriptedHandler(next: "next")
            let worker = Worker(broker: broker, handler: handler, configuration: testConfiguration("work"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
            let settled = try await runWorker(worker) {
                let counters = try await broker.counters(["work", "next", "work-dlq"])
                return counters["work"]?.total == 0 && counters["next"]?.visible == 11 && counters["work-dlq"]?.visible == 4
            }
            #expect(settled)
            #expect(handler.attemptsOf(102) == 2, "recovered on the second attempt")
            #expect(handler.attemptsOf(103) == 3, "retried up to the max receive count")
            #expect(handler.attemptsOf(100) == 1, "permanent errors are not retried")
            #expect(handler.attemptsOf(104) == 1)

            let dead = try await broker.drain("work-dlq", count: 4)
            let letters = try dead.map { try EventCoding.decode(DeadLetterEnvelope.self, from: $0.body) }
            #expect(dead.allSatisfy { $0.attributes[DeadLetterEnvelope.attributeName] != nil })
            let byReason = Dictionary(grouping: letters, by: \.reason)
            #expect(byReason["permanent"]?.count == 3, "poison, garbage body, garbage in the handler")
            #expect(byReason["retriesExhausted"]?.count == 1)
            #expect(byReason["retriesExhausted"]?.first?.receiveCount == 3)
            #expect(byReason["retriesExhausted"]?.first?.error.contains("always down 103") == true)
            #expect(letters.allSatisfy { $0.queue == "work" })
            #expect(letters.contains { $0.body == "not json at all" })

            // 10 ok + the recovered one; the silent one publishes nothing.
            let log = try await eventLog(broker)
            #expect(log.count == 11)
            #expect(Set(log.map(\.id)).count == log.count, "every event once")
        }
    }

    @Test(arguments: Backend.allCases)
    func aSlowHandlerKeepsItsLease(_ backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("slow", attributes: QueueAttributes(visibilityTimeout: .seconds(3)))
            _ = try await broker.send("slow", try script(1, "slow"))
            let handler = ScriptedHandler(slow: .seconds(7))
            let worker = Worker(broker: broker, handler: handler, configuration: testConfiguration("slow"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
            let running = Task { try await worker.run() }
            // While the handler works (7 s, more than two leases long) nobody else gets the message.
            try await Task.sleep(for: .milliseconds(300))
            let stolen = try await broker.receive("slow", maxMessages: 10, wait: .seconds(6))
            #expect(stolen.isEmpty)
            let done = try await eventually(timeout: .seconds(15)) { try await broker.counters("slow").total == 0 }
            worker.requestStop()
            try await running.value
            #expect(done)
            #expect(handler.attemptsOf(1) == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func stopFinishesTheBatchInHandAndReceivesNoMore(_ backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("drain", attributes: QueueAttributes(visibilityTimeout: .seconds(30)))
            _ = try await broker.sendBatch("drain", try (0..<5).map { try script($0, "slow") })
            let handler = ScriptedHandler(slow: .milliseconds(800))
            let worker = Worker(broker: broker, handler: handler, configuration: testConfiguration("drain", batch: 5, concurrency: 5), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
            let running = Task { try await worker.run() }
            #expect(await eventually { handler.attempts.withLock { $0.count } == 5 })
            _ = try await broker.sendBatch("drain", try (5..<10).map { try script($0, "ok") })
            worker.requestStop()
            try await running.value
            let counters = try await broker.counters("drain")
            #expect(counters.inFlight == 0, "the batch in hand was acknowledged")
            #expect(counters.visible == 5, "nothing received after the stop")
            #expect((0..<5).allSatisfy { handler.attemptsOf($0) == 1 })
        }
    }

    @Test func stopWakesAnIdleLongPoll() async throws {
        try await withTestBroker(.postgres) { broker, _ in
            try await broker.createQueue("idle")
            var configuration = testConfiguration("idle")
            configuration.wait = .seconds(60)
            let worker = Worker(broker: broker, handler: ScriptedHandler(), configuration: configuration, stager: PayloadStager(store: nil), logger: Logger(label: "test"))
            let running = Task { try await worker.run() }
            try await Task.sleep(for: .milliseconds(300))
            let started = ContinuousClock.now
            worker.requestStop()
            try await running.value
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test(arguments: Backend.allCases)
    func oversizedBodiesTravelThroughStaging(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let stager = PayloadStager(store: store)
                try await broker.createQueue("small", attributes: QueueAttributes(maxMessageBytes: 1024))
                try await broker.createQueue("small-next", attributes: QueueAttributes(maxMessageBytes: 1024))
                let big = try script(1, "big-output", pad: 5000)
                await #expect(throws: BrokerError.self) { try await broker.send("small", big) }
                let (staged, key) = try await stager.prepare(big, queue: "small", maxBytes: 1024)
                let stagedKey = try #require(key)
                #expect(staged.body.utf8.count < 1024)
                _ = try await broker.send("small", staged)
                #expect(try await store.exists(stagedKey))

                let handler = ScriptedHandler(next: "small-next")
                let worker = Worker(broker: broker, handler: handler, configuration: testConfiguration("small"), stager: stager, logger: Logger(label: "test"))
                let done = try await runWorker(worker) { try await broker.counters("small-next").visible == 1 }
                #expect(done)
                #expect(handler.bodies.withLock { $0[1] } == big.body, "the handler saw the whole body")
                #expect(try await !store.exists(stagedKey), "staged input deleted after the acknowledgement")

                // The handler's 3000-byte output was staged for the 1 KiB queue; the consumer side resolves it.
                let forwarded = try #require(try await broker.receive("small-next").first)
                let outputKey = try #require(try PayloadStager.stagedKey(of: forwarded))
                #expect(try await stager.resolve(forwarded) == String(repeating: "y", count: 3000))
                #expect(try await store.exists(outputKey))
                // A missing store on the consumer side is a permanent, explained error.
                await #expect(throws: WorkerError.self) { try await PayloadStager(store: nil).resolve(forwarded) }
                try await store.shutdown()
            }
        }
    }

    /// A handler that, on its first attempt, lets another consumer take the message over (its
    /// lease is lost before the acknowledgement), then hands it back.
    final class LeaseStealingHandler: MessageHandler {
        let broker: Broker
        let queue: String
        let attempts = LockedBox(0)
        let bodies = LockedBox([String]())

        init(broker: Broker, queue: String) {
            self.broker = broker
            self.queue = queue
        }

        func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
            let attempt = attempts.withLock { count -> Int in
                count += 1
                return count
            }
            bodies.withLock { $0.append(message.body) }
            if attempt == 1 {
                try await broker.changeVisibility(queue, message.received.receipt, timeout: .zero)
                guard let thief = try await broker.receive(queue, maxMessages: 1).first else { throw WorkerError.permanent("nothing to steal") }
                try await broker.changeVisibility(queue, thief.receipt, timeout: .zero)
            }
            return .success(Effects())
        }
    }

    @Test(arguments: Backend.allCases)
    func aStagedBodySurvivesALeaseLostBeforeTheAcknowledgement(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let stager = PayloadStager(store: store)
                try await broker.createQueue("lease", attributes: QueueAttributes(maxMessageBytes: 1024))
                let big = try script(7, "ok", pad: 5000)
                let (staged, key) = try await stager.prepare(big, queue: "lease", maxBytes: 1024)
                let stagedKey = try #require(key)
                _ = try await broker.send("lease", staged)

                let handler = LeaseStealingHandler(broker: broker, queue: "lease")
                let worker = Worker(broker: broker, handler: handler, configuration: testConfiguration("lease"), stager: stager, logger: Logger(label: "test"))
                let done = try await runWorker(worker) { try await broker.counters("lease").total == 0 }
                #expect(done)
                #expect(handler.attempts.withLock { $0 } == 2, "handled again after the lost lease")
                let bodies = handler.bodies.withLock { $0 }
                #expect(bodies.count == 2 && bodies.allSatisfy { $0 == big.body }, "the redelivery still found its staged body")
                #expect(try await !store.exists(stagedKey), "deleted once the acknowledgement committed")
                try await store.shutdown()
            }
        }
    }

    /// Steals the lease of message `victim` the first time it is handled; handles the others.
    final class OneLeaseStealingHandler: MessageHandler {
        let broker: Broker
        let queue: String
        let victim: Int
        let attempts = LockedBox([Int: Int]())
        let bodies = LockedBox([Int: [String]]())

        init(broker: Broker, queue: String, victim: Int) {
            self.broker = broker
            self.queue = queue
            self.victim = victim
        }

        func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
            let n = try EventCoding.decode(Script.self, from: message.body).n
            let attempt = attempts.withLock { counts -> Int in
                counts[n, default: 0] += 1
                return counts[n] ?? 0
            }
            bodies.withLock { $0[n, default: []].append(message.body) }
            if n == victim, attempt == 1 {
                try await broker.changeVisibility(queue, message.received.receipt, timeout: .zero)
                guard let thief = try await broker.receive(queue, maxMessages: 1).first else { throw WorkerError.permanent("nothing to steal") }
                try await broker.changeVisibility(queue, thief.receipt, timeout: .zero)
            }
            return .success(Effects())
        }
    }

    @Test("a lease lost mid-batch: the batch's other staged bodies go with their acknowledgements, the stolen one's stays for its redelivery", arguments: Backend.allCases)
    func aStagedBodySurvivesALeaseLostMidBatch(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let stager = PayloadStager(store: store)
                try await broker.createQueue("batch-lease", attributes: QueueAttributes(maxMessageBytes: 1024))
                var keys: [ObjectKey] = []
                var originals: [Int: String] = [:]
                for n in 0..<3 {
                    let big = try script(n, "ok", pad: 5000)
                    let (staged, key) = try await stager.prepare(big, queue: "batch-lease", maxBytes: 1024)
                    keys.append(try #require(key))
                    originals[n] = big.body
                    _ = try await broker.send("batch-lease", staged)
                }
                let handler = OneLeaseStealingHandler(broker: broker, queue: "batch-lease", victim: 1)
                let worker = Worker(
                    broker: broker, handler: handler, configuration: testConfiguration("batch-lease", batch: 3, concurrency: 3), stager: stager,
                    logger: Logger(label: "test"))
                let done = try await runWorker(worker) { try await broker.counters("batch-lease").total == 0 }
                #expect(done)
                #expect(handler.attempts.withLock { $0 } == [0: 1, 1: 2, 2: 1], "only the stolen one was handled again")
                let bodies = handler.bodies.withLock { $0 }
                for n in 0..<3 {
                    #expect(bodies[n]?.allSatisfy { $0 == originals[n] } == true, "message \(n) always found its staged body")
                }
                for key in keys { #expect(try await !store.exists(key), "\(key) deleted once its acknowledgement committed") }
                try await store.shutdown()
            }
        }
    }

    @Test func aStagedKeyOutsideTheStagingPrefixIsRefused() async throws {
        try await withTestBroker(.sqlite) { broker, _ in
            try await broker.createQueue("keys")
            let bad = ["case_1/documents/1/1.pdf", "staging/../case_1/documents/1/1.pdf", "staging/q/x.pdf", "staging/q/sub/x.json", "staging//x.json"]
            for raw in bad + ["staging/q/abc.json"] {
                var message = OutgoingMessage(body: "{}")
                message.attributes[PayloadStager.attributeName] = .string(raw)
                _ = try await broker.send("keys", message)
                let received = try #require(try await broker.receive("keys").first)
                if bad.contains(raw) {
                    #expect(throws: WorkerError.self, "\(raw)") { try PayloadStager.stagedKey(of: received) }
                } else {
                    #expect(try PayloadStager.stagedKey(of: received)?.rawValue == raw)
                }
                try await broker.delete("keys", received.receipt)
            }
        }
    }

    @Test func metricsEndpointServesTheWorkersCounters() async throws {
        let endpoint = try await MetricsEndpoint.start(host: "127.0.0.1", port: 0, logger: Logger(label: "test"))
        try await withTestBroker(.sqlite) { broker, _ in
            let queue = "metrics-\(UUID().uuidString.prefix(8).lowercased())"
            try await broker.createQueue(queue)
            _ = try await broker.sendBatch(queue, try (0..<3).map { try script($0, "ok") })
            let worker = Worker(broker: broker, handler: ScriptedHandler(), configuration: testConfiguration(queue), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
            #expect(try await runWorker(worker) { try await broker.counters(queue).total == 0 })
        }
        let url = try #require(URL(string: "http://127.0.0.1:\(endpoint.port)/metrics"))
        let (data, response) = try await URLSession.shared.data(from: url)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let text = String(decoding: data, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix("exchanger_messages_total{") && $0.contains("queue=\"metrics-") && $0.contains("outcome=\"success\"") }
        #expect(line?.hasSuffix(" 3") == true, "\(String(describing: line))")
        #expect(text.contains("exchanger_message_handling_seconds"))
        let health = try #require(URL(string: "http://127.0.0.1:\(endpoint.port)/healthz"))
        let (body, _) = try await URLSession.shared.data(from: health)
        #expect(String(decoding: body, as: UTF8.self) == "ok\n")
        await endpoint.close()
    }
}
