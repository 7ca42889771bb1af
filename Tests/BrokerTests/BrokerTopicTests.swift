import ExchangerTestSupport
import Broker
import DatabaseSupport
import Foundation
import Testing

/// Topic fan-out, the event log and transactions, against both backends.
@Suite("Broker topic and transactions")
struct BrokerTopicTests {
    @Test("publish fans out to every matching subscription, once per event id", arguments: Backend.allCases)
    func fanOut(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            for name in ["orch", "status", "reocr", "all"] { try await broker.createQueue(name) }
            try await broker.subscribe("orch", topic: "events", filterPolicy: #"{"eventType":["PAYLOAD_CONSTRUCTION_FINISHED","EXCHANGER_DELETE_INITIATED"]}"#)
            try await broker.subscribe("status", topic: "events", filterPolicy: #"{"eventType":[{"prefix":"EXCHANGER_"}],"eventType2":[{"exists":false}]}"#)
            try await broker.subscribe("reocr", topic: "events", filterPolicy: #"{"eventType":["DOCUMENT_UPLOADED"],"caseId":["42"],"batchId":[{"numeric":[">=",7,"<",8]}]}"#)
            try await broker.subscribe("all", topic: "events")

            func event(_ type: String, _ extra: MessageAttributes = [:], id: String = UUID().uuidString) -> TopicMessage {
                TopicMessage(eventID: id, body: "{\"type\":\"\(type)\"}", attributes: extra.merging(["eventType": .string(type)]) { $1 })
            }
            let results = try await broker.publishBatch([
                event("EXCHANGER_INITIATED"),
                event("PAYLOAD_CONSTRUCTION_FINISHED"),
                event("DOCUMENT_UPLOADED", ["caseId": .string("42"), "batchId": .number(7)]),
                event("DOCUMENT_UPLOADED", ["caseId": .string("43"), "batchId": .number(7)]),
                event("DOCUMENT_UPLOADED", ["caseId": .string("42"), "batchId": .number(8)]),
            ], topic: "events")
            #expect(results.map { Set($0.deliveredTo) } == [
                ["status", "all"], ["orch", "all"], ["reocr", "all"], ["all"], ["all"],
            ])
            #expect(results.allSatisfy { $0.published })
            let reocr = try await broker.drain("reocr", count: 1)
            #expect(reocr.count == 1)
            #expect(reocr.first?.attributes["caseId"] == .string("42"))
            #expect(reocr.first?.eventID == results[2].eventID)
            #expect(try await broker.counters("all").visible == 5)

            // The same event id again: not stored, not delivered.
            let again = try await broker.publish(TopicMessage(eventID: results[1].eventID, body: "other", attributes: ["eventType": .string("PAYLOAD_CONSTRUCTION_FINISHED")]), topic: "events")
            #expect(again.published == false)
            #expect(again.deliveredTo.isEmpty)
            #expect(try await broker.counters("orch").visible == 1)
            #expect(try await broker.counters("all").visible == 5)
            // Duplicates inside one batch are delivered once.
            let dup = try await broker.publishBatch([event("X", id: "same"), event("X", id: "same")], topic: "events")
            #expect(dup.map(\.published) == [true, false])
            #expect(try await broker.counters("all").visible == 6)

            // The event log holds each event once, with how many queues got it.
            let logged = try await broker.transaction { transaction in
                try await transaction.query("SELECT event_id, delivered_to FROM broker_events ORDER BY seq")
            }
            #expect(logged.count == 6)
            #expect(logged.first?["delivered_to"].int == 2)
        }
    }

    @Test("invalid filter policies are refused at subscribe time, naming the fault", arguments: Backend.allCases)
    func invalidPolicies(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("q")
            let cases = [
                (#"{"eventType": "notAnArray"}"#, "eventType"),
                (#"{"size": [{"numeric": [">", "five"]}]}"#, "size"),
                (#"{"a": [{"cidr": "10.0.0.0/8"}]}"#, "cidr"),
                (#"not json"#, "JSON"),
            ]
            for (policy, mention) in cases {
                let error = await #expect(throws: BrokerError.self) { try await broker.subscribe("q", topic: "t", filterPolicy: policy) }
                #expect(error?.code == .invalidFilterPolicy)
                #expect(error?.message.localizedCaseInsensitiveContains(mention) == true, "\(error?.message ?? "") should name \(mention)")
            }
            #expect(try await broker.subscriptions().isEmpty)
            let first = try await broker.subscribe("q", topic: "t", filterPolicy: #"{"a":["x"]}"#)
            let same = try await broker.subscribe("q", topic: "t", filterPolicy: #"{"a":["x"]}"#)
            #expect(first.id == same.id)
            let conflict = await #expect(throws: BrokerError.self) { try await broker.subscribe("q", topic: "t", filterPolicy: #"{"a":["y"]}"#) }
            #expect(conflict?.code == .subscriptionConflict)
            #expect(try await broker.unsubscribe(first.id))
            #expect(try await broker.unsubscribe(first.id) == false)
            let missingQueue = await #expect(throws: BrokerError.self) { try await broker.subscribe("nope", topic: "t") }
            #expect(missingQueue?.code == .queueNotFound)
        }
    }

    @Test("a transaction publishes, sends and deletes together, or not at all", arguments: Backend.allCases)
    func transactions(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("in")
            try await broker.createQueue("out")
            try await broker.createQueue("audit")
            try await broker.subscribe("audit", topic: "t")
            try await broker.sendBatch("in", [OutgoingMessage(body: "first"), OutgoingMessage(body: "second")])
            let messages = try await broker.receive("in", maxMessages: 2)
            let (first, second) = (messages[0], messages[1])

            struct Boom: Error {}
            await #expect(throws: Boom.self) {
                try await broker.transaction { transaction in
                    try await transaction.send("out", OutgoingMessage(body: "derived"))
                    try await transaction.publish(TopicMessage(eventID: "evt-rolled-back", body: "done"), topic: "t")
                    try await transaction.delete("in", first.receipt)
                    throw Boom()
                }
            }
            #expect(try await broker.counters("out").total == 0)
            #expect(try await broker.counters("audit").total == 0)
            #expect(try await broker.counters("in").inFlight == 2)  // the delete was rolled back too

            // A stale receipt inside the transaction aborts all of it.
            let staleReceipt = first.receipt
            try await broker.delete("in", second.receipt)
            let stale = await #expect(throws: BrokerError.self) {
                try await broker.transaction { transaction in
                    try await transaction.send("out", OutgoingMessage(body: "derived"))
                    try await transaction.delete("in", second.receipt)
                }
            }
            #expect(stale?.code == .staleReceipt)
            #expect(try await broker.counters("out").total == 0)

            let result = try await broker.transaction { transaction in
                try await transaction.send("out", OutgoingMessage(body: "derived"))
                let published = try await transaction.publish(TopicMessage(eventID: "evt-1", body: "done"), topic: "t")
                try await transaction.delete("in", staleReceipt)
                return published
            }
            #expect(result.deliveredTo == ["audit"])
            #expect(try await broker.counters("out").visible == 1)
            #expect(try await broker.counters("audit").visible == 1)
            #expect(try await broker.counters("in").total == 0)
            // The rolled-back event id was never stored, so it can still be published.
            #expect(try await broker.publish(TopicMessage(eventID: "evt-rolled-back", body: "now"), topic: "t").published)
        }
    }

    @Test("publishing into a queue races its seal: nothing arrives after the seal's final count", arguments: Backend.allCases)
    func publishRacesSeal(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await broker.createQueue("target")
            try await broker.subscribe("target", topic: "t")
            let publishers = (0..<4).map { worker in
                Task {
                    var published = 0
                    for index in 0..<200 {
                        let result = try await broker.publish(TopicMessage(eventID: "w\(worker)-\(index)", body: "x"), topic: "t")
                        if !result.deliveredTo.isEmpty { published += 1 }
                    }
                    return published
                }
            }
            try await Task.sleep(for: .milliseconds(50))
            let sealed = try await broker.seal(["target"])
            let countAtSeal = try #require(sealed["target"]).total
            var delivered = 0
            for publisher in publishers { delivered += try await publisher.value }
            // Every delivery committed before the seal and was counted by it; none came after.
            #expect(try await broker.counters("target").total == countAtSeal)
            #expect(delivered == countAtSeal)
        }
    }
}
