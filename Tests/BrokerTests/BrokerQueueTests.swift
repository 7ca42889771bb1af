import ExchangerTestSupport
import Broker
import DatabaseSupport
import Foundation
import Testing

/// Queue semantics, run against both backends: the same expectations for PostgreSQL and SQLite.
@Suite("Broker queues")
struct BrokerQueueTests {
    @Test("create is idempotent; other attributes conflict; deletes refuse a queue in use as DLQ", arguments: Backend.allCases)
    func createAndDelete(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            let dlq = try await broker.createQueue("orders-dlq")
            let attributes = QueueAttributes(visibilityTimeout: .seconds(45), maxReceiveCount: 5, deadLetterQueue: "orders-dlq",
                delay: .seconds(2), exchangeID: "job-1", program: "s3-copy")
            let first = try await broker.createQueue("orders", attributes: attributes)
            let again = try await broker.createQueue("orders", attributes: attributes)
            #expect(first == again)
            #expect(first.attributes == attributes)
            #expect(dlq.attributes == QueueAttributes())
            let conflict = await #expect(throws: BrokerError.self) {
                try await broker.createQueue("orders", attributes: QueueAttributes(visibilityTimeout: .seconds(10)))
            }
            #expect(conflict?.code == .queueAlreadyExists)
            let missingDLQ = await #expect(throws: BrokerError.self) {
                try await broker.createQueue("other", attributes: QueueAttributes(deadLetterQueue: "nope"))
            }
            #expect(missingDLQ?.code == .queueNotFound)
            let inUse = await #expect(throws: BrokerError.self) { try await broker.deleteQueue("orders-dlq") }
            #expect(inUse?.code == .queueInUse)

            let byExchange = try await broker.listQueues(QueueFilter(exchangeID: "job-1"))
            #expect(byExchange.map(\.name) == ["orders"])
            #expect(try await broker.listQueues(QueueFilter(namePrefix: "orders")).map(\.name) == ["orders", "orders-dlq"])

            try await broker.send("orders", OutgoingMessage(body: "x"))
            try await broker.deleteQueue("orders")
            try await broker.deleteQueue("orders-dlq")
            #expect(try await broker.queue(named: "orders") == nil)
            let gone = await #expect(throws: BrokerError.self) { try await broker.send("orders", OutgoingMessage(body: "x")) }
            #expect(gone?.code == .queueNotFound)
        }
    }

    @Test("bad names and attributes are typed errors and write nothing", arguments: Backend.allCases)
    func validation(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            for name in ["", "has space", "semi;colon", String(repeating: "a", count: 81), "quote'", "ünïcode", "slash/x"] {
                let error = await #expect(throws: BrokerError.self) { try await broker.createQueue(name) }
                #expect(error?.code == .invalidName, "name \(name)")
            }
            let bad: [QueueAttributes] = [
                QueueAttributes(visibilityTimeout: .seconds(43_201)),
                QueueAttributes(visibilityTimeout: .seconds(-1)),
                QueueAttributes(maxReceiveCount: 0),
                QueueAttributes(delay: .seconds(901)),
                QueueAttributes(retention: .seconds(59)),
                QueueAttributes(maxMessageBytes: 100),
                QueueAttributes(deadLetterQueue: "bad name"),
            ]
            for attributes in bad {
                let error = await #expect(throws: BrokerError.self) { try await broker.createQueue("q", attributes: attributes) }
                #expect(error?.code == .invalidAttribute || error?.code == .invalidName)
            }
            #expect(try await broker.listQueues().isEmpty)

            try await broker.createQueue("q", attributes: QueueAttributes(maxMessageBytes: 1024))
            let cases: [(OutgoingMessage, BrokerError.Code)] = [
                (OutgoingMessage(body: ""), .invalidMessage),
                (OutgoingMessage(body: "a\u{0}b"), .invalidMessage),
                (OutgoingMessage(body: String(repeating: "x", count: 1025)), .messageTooLarge),
                (OutgoingMessage(body: "x", delay: .seconds(901)), .invalidAttribute),
                (OutgoingMessage(body: "x", attributes: Dictionary(uniqueKeysWithValues: (0..<11).map { ("k\($0)", .string("v")) })), .invalidMessage),
                (OutgoingMessage(body: "x", attributes: ["bad key": .string("v")]), .invalidMessage),
            ]
            for (message, code) in cases {
                let error = await #expect(throws: BrokerError.self) { try await broker.sendBatch("q", [OutgoingMessage(body: "ok"), message]) }
                #expect(error?.code == code)
            }
            // All-or-nothing: the valid neighbour of each bad message was not stored either.
            #expect(try await broker.counters("q").total == 0)
            let receipt = #expect(throws: BrokerError.self) { _ = try ReceiptHandle("garbage") }
            #expect(receipt?.code == .invalidReceipt)
            let tooMany = await #expect(throws: BrokerError.self) { try await broker.receive("q", maxMessages: 0) }
            #expect(tooMany?.code == .invalidAttribute)
        }
    }

    @Test("send, receive, delete; counters see visible, in flight and delayed", arguments: Backend.allCases)
    func sendReceiveDelete(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("q")
            let body = "{\"quote\":\"it's\",\"unicode\":\"żółw 🐢\",\"backslash\":\"a\\\\b\"}"
            let ids = try await broker.sendBatch("q", (0..<5).map { OutgoingMessage(body: "\(body)-\($0)", attributes: ["n": .number(Double($0)), "kind": .string("k")]) })
            #expect(Set(ids).count == 5)
            try await broker.send("q", OutgoingMessage(body: "later", delay: .seconds(60)))
            var counters = try await broker.counters("q")
            #expect(counters == QueueCounters(visible: 5, inFlight: 0, delayed: 1))

            let received = try await broker.receive("q", maxMessages: 3)
            #expect(received.count == 3)
            #expect(received.map(\.body) == (0..<3).map { "\(body)-\($0)" })
            #expect(received.allSatisfy { $0.receiveCount == 1 && $0.queue == "q" })
            #expect(received[1].attributes == ["n": .number(1), "kind": .string("k")])
            #expect(Set(received.map(\.messageID)).isSubset(of: Set(ids)))
            counters = try await broker.counters("q")
            #expect(counters == QueueCounters(visible: 2, inFlight: 3, delayed: 1))

            let outcome = try await broker.deleteBatch("q", received.map(\.receipt))
            #expect(outcome.succeeded.count == 3 && outcome.failed.isEmpty)
            #expect(try await broker.counters("q") == QueueCounters(visible: 2, inFlight: 0, delayed: 1))
            // Deleting again: the message is gone, the receipt is stale.
            let stale = await #expect(throws: BrokerError.self) { try await broker.delete("q", received[0].receipt) }
            #expect(stale?.code == .staleReceipt)
            // A receipt is only good on its own queue.
            try await broker.createQueue("other")
            let rest = try await broker.receive("q", maxMessages: 10)
            #expect(rest.count == 2)
            let wrongQueue = await #expect(throws: BrokerError.self) { try await broker.delete("other", rest[0].receipt) }
            #expect(wrongQueue?.code == .staleReceipt)
            #expect(try await broker.receive("q", maxMessages: 10).isEmpty)
        }
    }

    @Test("acknowledge-and-receive deletes the handled batch and leases the next in one call", arguments: Backend.allCases)
    func acknowledgeAndReceive(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("q")
            try await broker.sendBatch("q", (0..<7).map { OutgoingMessage(body: "m\($0)") })
            let first = try await broker.acknowledgeAndReceive("q", acknowledging: [], maxMessages: 3)
            #expect(first.messages.map(\.body) == ["m0", "m1", "m2"])
            #expect(first.acknowledged.succeeded.isEmpty && first.acknowledged.failed.isEmpty)

            let second = try await broker.acknowledgeAndReceive("q", acknowledging: first.messages.map(\.receipt), maxMessages: 3)
            #expect(Set(second.acknowledged.succeeded) == Set(first.messages.map(\.receipt)))
            #expect(second.messages.map(\.body) == ["m3", "m4", "m5"])
            #expect(try await broker.counters("q") == QueueCounters(visible: 1, inFlight: 3, delayed: 0))

            // A stale receipt fails on its own; the fresh ones are deleted; a lease that expired but was
            // not yet re-received is still deletable and is not handed out again in the same call.
            let expired = try await broker.acknowledgeAndReceive("q", acknowledging: [], maxMessages: 1, visibilityTimeout: .zero)
            let third = try await broker.acknowledgeAndReceive(
                "q", acknowledging: second.messages.map(\.receipt) + [first.messages[0].receipt] + expired.messages.map(\.receipt),
                maxMessages: 10, wait: .milliseconds(300))
            #expect(third.acknowledged.succeeded.count == 4)
            #expect(third.acknowledged.failed[first.messages[0].receipt]?.code == .staleReceipt)
            #expect(third.messages.isEmpty)  // nothing left: the acknowledged ones were not re-leased
            #expect(try await broker.counters("q").total == 0)

            let missing = await #expect(throws: BrokerError.self) { try await broker.acknowledgeAndReceive("nope", acknowledging: []) }
            #expect(missing?.code == .queueNotFound)
        }
    }

    @Test("receive takes large batches (not capped at 10)", arguments: Backend.allCases)
    func largeBatch(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("big")
            try await broker.sendBatch("big", (0..<750).map { OutgoingMessage(body: "m\($0)") })
            let batch = try await broker.receive("big", maxMessages: 500)
            #expect(batch.count == 500)
            #expect(Set(batch.map(\.body)).count == 500)
            #expect(try await broker.deleteBatch("big", batch.map(\.receipt)).succeeded.count == 500)
            #expect(try await broker.counters("big").visible == 250)
        }
    }

    @Test("a lease expires; the stale receipt never touches the re-delivered message", arguments: Backend.allCases)
    func visibilityTimeoutAndStaleReceipts(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("q", attributes: QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 10))
            try await broker.send("q", OutgoingMessage(body: "only"))
            // A lease of seconds: the check that the message is hidden must run before it ends even
            // on a machine loaded by the rest of the suite; the long poll then waits for the end.
            let first = try #require(try await broker.receive("q", visibilityTimeout: .seconds(2)).first)
            #expect(try await broker.receive("q").isEmpty)
            let second = try #require(try await broker.receive("q", wait: .seconds(10)).first)
            #expect(second.messageID == first.messageID)
            #expect(second.receiveCount == 2)
            #expect(second.receipt != first.receipt)
            #expect(second.firstReceivedAtMilliseconds == first.firstReceivedAtMilliseconds)

            let staleDelete = await #expect(throws: BrokerError.self) { try await broker.delete("q", first.receipt) }
            #expect(staleDelete?.code == .staleReceipt)
            let staleChange = await #expect(throws: BrokerError.self) { try await broker.changeVisibility("q", first.receipt, timeout: .zero) }
            #expect(staleChange?.code == .staleReceipt)
            #expect(try await broker.counters("q").inFlight == 1)  // the stale calls did nothing

            let mixed = try await broker.deleteBatch("q", [first.receipt, second.receipt])
            #expect(mixed.succeeded == [second.receipt])
            #expect(mixed.failed[first.receipt]?.code == .staleReceipt)
            #expect(try await broker.counters("q").total == 0)
        }
    }

    @Test("change visibility extends a lease or releases it at once", arguments: Backend.allCases)
    func changeVisibility(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("q", attributes: QueueAttributes(maxReceiveCount: 10))
            try await broker.send("q", OutgoingMessage(body: "a"))
            let message = try #require(try await broker.receive("q", visibilityTimeout: .milliseconds(300)).first)
            try await broker.changeVisibility("q", message.receipt, timeout: .seconds(30))
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await broker.receive("q").isEmpty)  // extended past the original 300 ms
            try await broker.changeVisibility("q", message.receipt, timeout: .zero)
            let again = try #require(try await broker.receive("q").first)
            #expect(again.messageID == message.messageID && again.receiveCount == 2)
            let bad = await #expect(throws: BrokerError.self) {
                try await broker.changeVisibility("q", again.receipt, timeout: .seconds(43_201))
            }
            #expect(bad?.code == .invalidAttribute)
        }
    }

    @Test("past max receive count a message moves to the DLQ; redrive brings it back with a new id", arguments: Backend.allCases)
    func deadLetterAndRedrive(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("work-dlq")
            try await broker.createQueue("work", attributes: QueueAttributes(maxReceiveCount: 2, deadLetterQueue: "work-dlq"))
            let id = try await broker.send("work", OutgoingMessage(body: "poison", attributes: ["documentId": .string("7")]))
            for expected in 1...2 {
                let message = try #require(try await broker.receive("work", visibilityTimeout: .zero).first)
                #expect(message.receiveCount == expected)
            }
            #expect(try await broker.receive("work").isEmpty)  // third receive moved it
            #expect(try await broker.counters("work").total == 0)
            let dead = try #require(try await broker.receive("work-dlq", visibilityTimeout: .zero).first)
            #expect(dead.body == "poison")
            #expect(dead.messageID == id)
            #expect(dead.sourceQueue == "work")
            #expect(dead.attributes == ["documentId": .string("7")])

            let moved = try await broker.redrive(from: "work-dlq")
            #expect(moved == 1)
            #expect(try await broker.counters("work-dlq").total == 0)
            let back = try #require(try await broker.receive("work").first)
            #expect(back.body == "poison")
            #expect(back.messageID != id)
            #expect(back.receiveCount == 1)
            #expect(back.attributes == ["documentId": .string("7")])
        }
    }

    @Test("redrive is rate limited and never loses a message whose target is gone", arguments: Backend.allCases)
    func redriveRateAndSafety(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("dlq")
            try await broker.createQueue("src", attributes: QueueAttributes(maxReceiveCount: 1, deadLetterQueue: "dlq"))
            try await broker.sendBatch("src", (0..<30).map { OutgoingMessage(body: "m\($0)") })
            _ = try await broker.receive("src", maxMessages: 30, visibilityTimeout: .zero)
            #expect(try await broker.receive("src", maxMessages: 30).isEmpty)
            #expect(try await broker.counters("dlq").visible == 30)

            try await broker.seal(["src"])  // a sealed target takes nothing: the messages stay in the DLQ
            #expect(try await broker.redrive(from: "dlq") == 0)
            #expect(try await broker.counters("dlq").visible == 30)
            try await broker.unseal(["src"])

            let clock = ContinuousClock()
            let started = clock.now
            #expect(try await broker.redrive(from: "dlq", perSecond: 20) == 30)
            #expect(clock.now - started >= .milliseconds(900))  // 30 at 20/s cannot finish in under ~1 s
            #expect(try await broker.counters("src").visible == 30)

            try await broker.createQueue("elsewhere")
            _ = try await broker.receive("src", maxMessages: 30, visibilityTimeout: .zero)
            _ = try await broker.receive("src", maxMessages: 30)
            #expect(try await broker.redrive(from: "dlq", to: "elsewhere") == 30)
            #expect(Set(try await broker.drain("elsewhere", count: 30).map(\.body)) == Set((0..<30).map { "m\($0)" }))
            let missing = await #expect(throws: BrokerError.self) { try await broker.redrive(from: "dlq", to: "nowhere") }
            #expect(missing?.code == .queueNotFound)
        }
    }

    @Test("queue and per-message delays hold messages back", arguments: Backend.allCases)
    func delays(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            // Margins of seconds: the checks below must run before the first delay ends even on a
            // machine loaded by the rest of the suite.
            try await broker.createQueue("slow", attributes: QueueAttributes(delay: .seconds(3)))
            try await broker.sendBatch("slow", [
                OutgoingMessage(body: "queue-delay"), OutgoingMessage(body: "no-delay", delay: .zero),
                OutgoingMessage(body: "own-delay", delay: .seconds(6)),
            ])
            #expect(try await broker.counters("slow") == QueueCounters(visible: 1, inFlight: 0, delayed: 2))
            #expect(try await broker.receive("slow", maxMessages: 10).map(\.body) == ["no-delay"])
            // A long poll returns the delayed message once it is due, without a notification.
            let queued = try await broker.receive("slow", maxMessages: 10, wait: .seconds(10))
            #expect(queued.map(\.body) == ["queue-delay"])
            let own = try await broker.receive("slow", maxMessages: 10, wait: .seconds(10))
            #expect(own.map(\.body) == ["own-delay"])
        }
    }

    @Test("a sealed queue refuses sends; receives and deletes go on; seal reports what is left", arguments: Backend.allCases)
    func sealing(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("a")
            try await broker.createQueue("b")
            try await broker.subscribe("a", topic: "t")
            try await broker.send("a", OutgoingMessage(body: "before"))
            let left = try await broker.seal(["a", "b"])
            #expect(left["a"]?.total == 1 && left["b"]?.total == 0)
            #expect(try await broker.queue(named: "a")?.sealed == true)
            let refused = await #expect(throws: BrokerError.self) { try await broker.send("a", OutgoingMessage(body: "after")) }
            #expect(refused?.code == .queueSealed)
            #expect(refused?.message.contains("sealed") == true)
            #expect(try await broker.subscriptions(topic: "t").isEmpty)
            let published = try await broker.publish(TopicMessage(body: "event"), topic: "t")
            #expect(published.deliveredTo.isEmpty)
            let message = try #require(try await broker.receive("a").first)
            #expect(message.body == "before")
            try await broker.delete("a", message.receipt)
            let missing = await #expect(throws: BrokerError.self) { try await broker.seal(["a", "nope"]) }
            #expect(missing?.code == .queueNotFound)
        }
    }

    @Test("maintenance vacuums the message table once it holds enough dead rows (PostgreSQL)", arguments: Backend.allCases)
    func maintenance(backend: Backend) async throws {
        var configuration = BrokerConfiguration()
        configuration.vacuumDeadRowThreshold = 1
        try await withTestBroker(backend, configuration: configuration) { broker, _ in
            try await broker.createQueue("churn")
            try await broker.sendBatch("churn", (0..<200).map { OutgoingMessage(body: "m\($0)") })
            _ = try await broker.drain("churn", count: 200)
            let vacuumed = try await broker.transaction { transaction in
                transaction.dialect == .postgres
                    ? try await transaction.query("SELECT coalesce(vacuum_count, 0) AS n FROM pg_stat_user_tables WHERE relname = 'broker_messages'").first?["n"].int ?? 0
                    : 0
            }
            // Statistics reach pg_stat_user_tables asynchronously; maintenance runs until it vacuums.
            let ran = await eventually(timeout: .seconds(10)) {
                try? await broker.maintain()
                let count = try? await broker.transaction { transaction in
                    transaction.dialect == .postgres
                        ? try await transaction.query("SELECT coalesce(vacuum_count, 0) AS n FROM pg_stat_user_tables WHERE relname = 'broker_messages'").first?["n"].int ?? 0
                        : 0
                }
                return backend == .sqlite || (count ?? 0) > vacuumed
            }
            #expect(ran)
            #expect(try await broker.counters("churn").total == 0)
        }
    }

    @Test("purge and the retention sweep delete in capped batches", arguments: Backend.allCases)
    func purgeAndRetention(backend: Backend) async throws {
        var configuration = BrokerConfiguration()
        configuration.purgeBatchSize = 7
        try await withTestBroker(backend, configuration: configuration) { broker, _ in
            try await broker.createQueue("p", attributes: QueueAttributes(retention: .seconds(60)))
            try await broker.sendBatch("p", (0..<20).map { OutgoingMessage(body: "m\($0)") })
            #expect(try await broker.purge("p") == 20)
            #expect(try await broker.counters("p").total == 0)

            try await broker.sendBatch("p", (0..<20).map { OutgoingMessage(body: "m\($0)") })
            // Age twelve of them past the 60 s retention.
            try await broker.transaction { transaction in
                let sql = transaction.dialect == .postgres
                    ? "UPDATE broker_messages SET sent_at = now() - interval '2 minutes', visible_at = now() - interval '2 minutes' WHERE id IN (SELECT id FROM broker_messages ORDER BY id LIMIT 12)"
                    : "UPDATE broker_messages SET sent_at = sent_at - 120000, visible_at = visible_at - 120000 WHERE id IN (SELECT id FROM broker_messages ORDER BY id LIMIT 12)"
                try await transaction.query(sql)
            }
            // One expired message is in flight: it stays until its lease ends.
            let held = try #require(try await broker.receive("p", visibilityTimeout: .seconds(30)).first)
            #expect(try await broker.purgeExpired() == 11)
            #expect(try await broker.counters("p").total == 9)
            try await broker.delete("p", held.receipt)
        }
    }
}
