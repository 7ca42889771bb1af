import Broker
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import Testing

/// The PostgreSQL session timeouts of long-running processes (``BrokerConfiguration/init(environment:)``),
/// and what the idle-in-transaction one bounds: how long a takeover waits on the row locks of a
/// client that vanished in the middle of its commit.
@Suite("Broker session timeouts")
struct SessionTimeoutTests {
    @Test("the environment sets them; 0 means the server's; garbage is refused naming the variable")
    func fromEnvironment() throws {
        let defaults = try BrokerConfiguration(environment: [:])
        #expect(defaults.postgres.idleInTransactionTimeout == .seconds(10))
        #expect(defaults.postgres.statementTimeout == .seconds(60))
        #expect(defaults.postgres.lockTimeout == nil)
        let set = try BrokerConfiguration(environment: [
            "EXCHANGER_BROKER_IDLE_IN_TRANSACTION_SECONDS": "2.5", "EXCHANGER_BROKER_STATEMENT_TIMEOUT_SECONDS": "0",
            "EXCHANGER_BROKER_LOCK_TIMEOUT_SECONDS": "3",
        ])
        #expect(set.postgres.idleInTransactionTimeout == .milliseconds(2500))
        #expect(set.postgres.statementTimeout == nil)
        #expect(set.postgres.lockTimeout == .seconds(3))
        for bad in ["soon", "-1", "3601", "nan"] {
            let error = #expect(throws: BrokerError.self) { _ = try BrokerConfiguration(environment: ["EXCHANGER_BROKER_LOCK_TIMEOUT_SECONDS": bad]) }
            #expect(error?.message.contains("EXCHANGER_BROKER_LOCK_TIMEOUT_SECONDS") == true)
        }
    }

    @Test("a session that vanished mid-commit holding an event row: the takeover's insert of the same event waits only until the idle-in-transaction timeout ends that session, and the event exists once")
    func takeoverWaitIsBounded() async throws {
        let configuration = try BrokerConfiguration(environment: ["EXCHANGER_BROKER_IDLE_IN_TRANSACTION_SECONDS": "2"])
        try await withTestBroker(.postgres, configuration: configuration) { broker, url in
            let other = try await Broker.connect(url: url, configuration: configuration)
            let event = TopicMessage(eventID: "evt-\(UUID().uuidString)", body: "{}")
            // The "cut-off" worker: publishes inside its transaction, then goes silent without committing.
            let stalled = Task {
                try await broker.transaction { tx in
                    _ = try await tx.publish(event)
                    try await Task.sleep(for: .seconds(8))
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            let started = ContinuousClock.now
            let result = try await other.publish(event)
            let waited = ContinuousClock.now - started
            #expect(waited < .seconds(6), "the takeover waited \(waited), bounded by the 2 s idle-in-transaction timeout")
            #expect(result.published, "the dead session's uncommitted event is gone: the takeover's is the one stored")
            await #expect(throws: (any Error).self) { try await stalled.value }
            let count = try await other.transaction { tx in
                try await tx.query("SELECT count(*) AS n FROM broker_events WHERE event_id = $1", [.text(event.eventID)]).first?["n"].int64
            }
            #expect(count == 1)
            await other.close()
        }
    }
}
