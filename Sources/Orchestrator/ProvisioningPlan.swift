import Broker
import Deployments
import ExchangerEvents

/// A per-exchange processing stage: its queue and the program that consumes it.
public enum ExchangeStage: String, Sendable, Hashable, CaseIterable {
    case s3Copy = "s3_copy"
    case preUploader = "pre_uploader"
    case reOCR = "re_ocr"
    case searchText = "search_text"
    case docUploader = "doc_uploader"

    /// The queue name, as in the reference: `doc_exch_{stage}_queue_{destinationCaseId}_{batchId}`.
    public func queueName(destinationCaseID: Int64, batchID: Int64) -> String {
        "doc_exch_\(rawValue)_queue_\(destinationCaseID)_\(batchID)"
    }

    /// The supervisor.conf program that consumes the queue.
    public var program: String {
        switch self {
        case .s3Copy: "s3-copy"
        case .preUploader: "pre-uploader"
        case .reOCR: "re-ocr"
        case .searchText: "search-text"
        case .docUploader: "uploader"
        }
    }

    /// The ``DocumentTask/routes`` key under which the stage's queue travels (s3-copy is only ever
    /// an entry queue, never a route).
    public var route: String? {
        switch self {
        case .s3Copy: nil
        case .preUploader: DocumentTask.Route.preUploader
        case .reOCR: DocumentTask.Route.reOCR
        case .searchText: DocumentTask.Route.searchText
        case .docUploader: DocumentTask.Route.uploader
        }
    }

    /// The stages a request needs (the reference's configurations table): no annotations →
    /// s3_copy, doc_uploader; annotations only → pre_uploader, re_ocr, search_text, doc_uploader;
    /// annotations and natives → all five.
    public static func stages(requiresAnnotations: Bool, includeNatives: Bool) -> [ExchangeStage] {
        switch (requiresAnnotations, includeNatives) {
        case (false, _): [.s3Copy, .docUploader]
        case (true, false): [.preUploader, .reOCR, .searchText, .docUploader]
        case (true, true): [.s3Copy, .preUploader, .reOCR, .searchText, .docUploader]
        }
    }
}

/// Settings of provisioning, with defaults.
public struct ProvisioningSettings: Sendable, Hashable {
    /// The shared dead-letter queue of every per-exchange queue (`exch-dlq`).
    public var deadLetterQueue: String = "exch-dlq"
    /// The topic the re-OCR queue subscribes to; nil is the broker's default topic.
    public var topic: String?
    /// Visibility timeout of the per-exchange queues (30 s).
    public var visibilityTimeout: Duration = .seconds(30)
    /// Receives before a message is dead-lettered (3, as in the reference).
    public var maxReceiveCount: Int = 3
    /// Fewest and most workers per deployment (1 and 4), unless ``programProcs`` names the program.
    public var minProcs: Int = 1
    /// Most workers per deployment (4).
    public var maxProcs: Int = 4
    /// Per-program (min, max) overrides, by program name.
    public var programProcs: [String: ClosedRange<Int>] = [:]
    /// Queue depth per worker for scaling; nil takes the program's `messages_per_proc`.
    public var messagesPerProc: Int?

    /// Every setting at its default.
    /// A value with the given fields.
    public init() {}
}

/// A queue the exchange needs.
public struct PlannedQueue: Sendable, Hashable {
    /// The stage it serves.
    public var stage: ExchangeStage
    /// The queue name.
    public var name: String
    /// Its attributes (DLQ, exchange, program).
    public var attributes: QueueAttributes

    /// A value with the given fields.
    public init(stage: ExchangeStage, name: String, attributes: QueueAttributes) {
        self.stage = stage
        self.name = name
        self.attributes = attributes
    }
}

/// A topic subscription the exchange needs.
public struct PlannedSubscription: Sendable, Hashable {
    /// The subscribed queue.
    public var queue: String
    /// nil: the broker's default topic.
    public var topic: String?
    /// The SNS filter policy (JSON).
    public var filterPolicy: String

    /// A value with the given fields.
    public init(queue: String, topic: String?, filterPolicy: String) {
        self.queue = queue
        self.topic = topic
        self.filterPolicy = filterPolicy
    }
}

/// A queue the orchestrator sends each document's task to (the first queue of a path).
public struct EntryQueue: Sendable, Hashable {
    /// The stage it serves.
    public var stage: ExchangeStage
    /// The queue name.
    public var name: String
    /// Only documents with native files get a task here (s3-copy next to the annotation path
    /// copies natives only).
    public var nativesOnly: Bool

    /// A value with the given fields.
    public init(stage: ExchangeStage, name: String, nativesOnly: Bool) {
        self.stage = stage
        self.name = name
        self.nativesOnly = nativesOnly
    }
}

/// Everything an exchange needs provisioned, decided from its request alone (no I/O).
public struct ProvisioningPlan: Sendable, Hashable {
    /// The exchange's id (`jobId` in events, `exchangeID` of its queues and deployments).
    public var jobID: String
    /// Queues in stage order.
    public var queues: [PlannedQueue]
    /// Topic subscriptions.
    public var subscriptions: [PlannedSubscription]
    /// One deployment per queue, of the queue's program.
    public var deployments: [DeploymentSpec]
    /// Where each document's task goes first: one entry without annotations (s3_copy) and with
    /// annotations only (pre_uploader); two with annotations and natives (pre_uploader for the PDF,
    /// s3_copy for the natives of documents that have any).
    public var entryQueues: [EntryQueue]
    /// The ``DocumentTask/routes`` every task carries: route name → queue name.
    public var routes: [String: String]

    /// The plan of `request` for exchange `jobID`.
    public init(jobID: String, request: ExchangeRequest, settings: ProvisioningSettings = .init()) {
        self.jobID = jobID
        let stages = ExchangeStage.stages(requiresAnnotations: request.requiresAnnotations, includeNatives: request.includeNatives)
        queues = stages.map { stage in
            PlannedQueue(
                stage: stage, name: stage.queueName(destinationCaseID: request.destinationCaseID, batchID: request.batchID),
                attributes: QueueAttributes(
                    visibilityTimeout: settings.visibilityTimeout, maxReceiveCount: settings.maxReceiveCount,
                    deadLetterQueue: settings.deadLetterQueue, exchangeID: jobID, program: stage.program))
        }
        var routes: [String: String] = [:]
        for queue in queues {
            if let route = queue.stage.route { routes[route] = queue.name }
        }
        self.routes = routes
        subscriptions = queues.filter { $0.stage == .reOCR }.map { queue in
            PlannedSubscription(
                queue: queue.name, topic: settings.topic,
                filterPolicy: #"{"batchId":["\#(request.batchID)"],"caseId":["\#(request.destinationCaseID)"],"eventType":["\#(EventType.documentUploaded.rawValue)"]}"#)
        }
        deployments = queues.map { queue in
            let procs = settings.programProcs[queue.stage.program] ?? settings.minProcs...settings.maxProcs
            return DeploymentSpec(
                id: "\(jobID)/\(queue.stage.program)", exchangeID: jobID, program: queue.stage.program, queue: queue.name,
                minProcs: procs.lowerBound, maxProcs: procs.upperBound, messagesPerProc: settings.messagesPerProc)
        }
        let byStage = Dictionary(uniqueKeysWithValues: queues.map { ($0.stage, $0.name) })
        switch (request.requiresAnnotations, request.includeNatives) {
        case (false, _):
            entryQueues = byStage[.s3Copy].map { [EntryQueue(stage: .s3Copy, name: $0, nativesOnly: false)] } ?? []
        case (true, false):
            entryQueues = byStage[.preUploader].map { [EntryQueue(stage: .preUploader, name: $0, nativesOnly: false)] } ?? []
        case (true, true):
            entryQueues = [
                byStage[.preUploader].map { EntryQueue(stage: .preUploader, name: $0, nativesOnly: false) },
                byStage[.s3Copy].map { EntryQueue(stage: .s3Copy, name: $0, nativesOnly: true) },
            ].compactMap { $0 }
        }
    }
}
