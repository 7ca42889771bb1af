import Broker
import Deployments
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

/// The orchestrator's pieces on a fresh broker database of `backend`.
struct Harness: Sendable {
    let broker: Broker
    let store: ExchangeStore
    let deployments: DeploymentStore
    var settings: OrchestratorSettings

    var provisioner: Provisioner { Provisioner(broker: broker, store: store, deployments: deployments) }
    var payload: PayloadConstructor { PayloadConstructor(broker: broker, store: store, settings: settings.payload) }
    var drainer: ExchangeDrainer { ExchangeDrainer(broker: broker, store: store, deployments: deployments, settings: settings.drain) }

    func runner(_ copier: any CaseDataCopying) -> ExchangeRunner { ExchangeRunner(broker: broker, copier: copier, settings: settings) }

    /// Accepts `request` and returns its record.
    func accept(_ request: ExchangeRequest) async throws -> ExchangeRecord {
        try await store.accept(request, idempotencyKey: try request.idempotencyKey()).record
    }

    /// Walks an accepted exchange along the happy path up to `state`.
    @discardableResult
    func move(_ record: ExchangeRecord, to state: ExchangeState) async throws -> ExchangeRecord {
        var current = record
        while current.state != state, let next = current.state.next {
            current = try await store.transition(current.jobID, from: current.state, to: next)
        }
        return current
    }

    /// Queue names of the exchange in the broker.
    func queues(of jobID: String) async throws -> [String] {
        try await broker.listQueues().filter { $0.attributes.exchangeID == jobID }.map(\.name).sorted()
    }
}

func withHarness<T: Sendable>(
    _ backend: Backend, settings: OrchestratorSettings = testSettings, _ body: (Harness) async throws -> T
) async throws -> T {
    try await withTestBroker(backend) { broker, _ in
        try await body(Harness(broker: broker, store: ExchangeStore(broker: broker), deployments: DeploymentStore(broker: broker), settings: settings))
    }
}

/// Fast timings for tests.
let testSettings: OrchestratorSettings = {
    var settings = OrchestratorSettings()
    settings.drain.checkInterval = .milliseconds(20)
    settings.drain.workerStopTimeout = .seconds(5)
    settings.drain.workerPollInterval = .milliseconds(50)
    settings.copyRetries = CopyRetrySettings(retries: 2, initialDelay: .milliseconds(10), backoffRate: 2)
    settings.payload.batchSize = 7
    return settings
}()

func request(
    source: Int64 = 41, destination: Int64 = 42, batch: Int64 = 7, selection: DocumentSelection = .label(3),
    annotations: Bool = false, natives: Bool = false
) -> ExchangeRequest {
    ExchangeRequest(
        sourceCaseID: source, destinationCaseID: destination, batchID: batch, selection: selection,
        requiresAnnotations: annotations, includeNatives: natives)
}

/// The copy step as a test sees it: `count` documents with new ids source + 1000, some with natives.
struct InMemoryCopier: CaseDataCopying {
    var count: Int
    var failures: Int = 0
    let attempts = Counter()
    /// Every ``recordOutcomes(_:_:)`` call, in order.
    let recorded = Recorder<DocumentOutcomes>()

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {
        await recorded.append(outcomes)
    }

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        let attempt = await attempts.increment()
        if attempt <= failures { throw OrchestratorError(.copyFailed, "simulated copy failure \(attempt)") }
        return Self.outcome(count)
    }

    static func outcome(_ count: Int) -> CopyOutcome {
        CopyOutcome(documents: (1...max(1, count)).prefix(count).map { index in
            let id = Int64(index)
            var files = [DocumentFile(name: "document.pdf", kind: .rendition)]
            if index.isMultiple(of: 2) { files.append(DocumentFile(name: "native.docx", kind: .native)) }
            return CopiedDocument(sourceDocumentID: id, documentID: id + 1000, exhibitID: id + 500, files: files)
        })
    }
}

actor Counter {
    private(set) var value = 0
    func increment() -> Int {
        value += 1
        return value
    }
    func add(_ amount: Int) { value += amount }
}

/// Publishes a per-document fact of `jobID` as a worker would.
func publishFact(_ broker: Broker, jobID: String, _ type: EventType, document: Int64) async throws {
    let event = try EventEnvelope(
        type: type, source: "test", jobID: jobID, caseID: 42, sourceCaseID: 41, batchID: 7, documentID: document,
        detail: ExchangeStatusDetail())
    try await broker.publish(try event.topicMessage())
}

/// Events of `type` for `jobID` in the event log.
func loggedEvents(_ broker: Broker, jobID: String, _ type: EventType) async throws -> [EventEnvelope] {
    let rows = try await broker.transaction { tx in
        try await tx.query(tx.dialect == .postgres ? "SELECT body FROM broker_events ORDER BY seq" : "SELECT body FROM broker_events ORDER BY seq")
    }
    return try rows.compactMap { $0["body"].string }.map { try EventEnvelope.decode($0) }
        .filter { $0.jobID == jobID && $0.eventType == type }
}
