import Orchestrator
import Testing

@Suite("exchange state machine")
struct StateMachineTests {
    /// The allowed transitions, written out independently of the implementation.
    static let allowed: Set<String> = {
        var pairs: Set<String> = [
            "ACCEPTED>PROVISIONING", "PROVISIONING>COPYING_DATABASE", "COPYING_DATABASE>CONSTRUCTING_PAYLOAD",
            "CONSTRUCTING_PAYLOAD>PROCESSING", "PROCESSING>DRAINING", "DRAINING>FINISHED",
            "TEARING_DOWN(FAILED)>FAILED", "TEARING_DOWN(CANCELLED)>CANCELLED",
        ]
        for state in ["ACCEPTED", "PROVISIONING", "COPYING_DATABASE", "CONSTRUCTING_PAYLOAD", "PROCESSING", "DRAINING"] {
            pairs.insert("\(state)>TEARING_DOWN(FAILED)")
            pairs.insert("\(state)>TEARING_DOWN(CANCELLED)")
        }
        return pairs
    }()

    @Test("every pair of states: allowed exactly when listed", arguments: ExchangeState.all)
    func exhaustive(from: ExchangeState) {
        for to in ExchangeState.all {
            let expected = Self.allowed.contains("\(from)>\(to)")
            #expect(from.canTransition(to: to) == expected, "\(from) → \(to)")
            if expected {
                #expect((try? from.transition(to: to)) == to)
            } else {
                #expect(throws: OrchestratorError.self) { try from.transition(to: to) }
            }
        }
    }

    @Test("final states have no successors; every other state reaches a final one")
    func finals() {
        for state in ExchangeState.all {
            #expect(state.isFinal == state.successors.isEmpty, "\(state)")
            var current = state
            var steps = 0
            while let next = current.next {
                #expect(current.canTransition(to: next))
                current = next
                steps += 1
            }
            #expect(current.isFinal && steps <= 6)
        }
        #expect(ExchangeState.happyPath.last == .finished)
        for (a, b) in zip(ExchangeState.happyPath, ExchangeState.happyPath.dropFirst()) { #expect(a.next == b) }
    }

    @Test("stored names round-trip; inconsistent pairs are refused")
    func storage() {
        for state in ExchangeState.all {
            #expect(ExchangeState(name: state.name, teardownTarget: state.teardownTarget?.rawValue) == state)
        }
        #expect(ExchangeState(name: "TEARING_DOWN", teardownTarget: nil) == nil)
        #expect(ExchangeState(name: "FINISHED", teardownTarget: "FAILED") == nil)
        #expect(ExchangeState(name: "DONE", teardownTarget: nil) == nil)
    }
}
