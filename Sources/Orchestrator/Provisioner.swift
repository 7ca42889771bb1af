import Broker
import Deployments
import Logging

/// Creates what a ``ProvisioningPlan`` lists, idempotently: every resource is recorded against the
/// exchange before it is created, and creating an existing queue, subscription or deployment with
/// the same settings is a no-op, so a run interrupted by a crash is simply run again.
public struct Provisioner: Sendable {
    /// The broker whose database holds the state.
    public let broker: Broker
    /// The exchanges' state.
    public let store: ExchangeStore
    /// The supervisor's deployment rows.
    public let deployments: DeploymentStore
    /// Where it logs.
    public let logger: Logger

    /// A value with the given fields.
    public init(broker: Broker, store: ExchangeStore, deployments: DeploymentStore, logger: Logger = Logger(label: "exchanger.orchestrator")) {
        self.broker = broker
        self.store = store
        self.deployments = deployments
        self.logger = logger
    }

    /// Creates the plan's queues (after the shared dead-letter queue, when missing), subscriptions
    /// and deployments.
    /// - Throws: ``OrchestratorError/Code/resourceConflict`` when a queue of the plan exists for
    ///   another exchange (same destination case and batch in flight).
    public func provision(_ plan: ProvisioningPlan) async throws {
        for dlq in Set(plan.queues.compactMap(\.attributes.deadLetterQueue)).sorted() {
            try await ensureDeadLetterQueue(dlq)
        }
        for queue in plan.queues {
            try await store.record(jobID: plan.jobID, kind: .queue, name: queue.name, detail: queue.stage.program)
            do {
                try await broker.createQueue(queue.name, attributes: queue.attributes)
            } catch let error as BrokerError where error.code == .queueAlreadyExists {
                let owner = try await broker.queue(named: queue.name)?.attributes.exchangeID
                guard owner == plan.jobID else {
                    throw OrchestratorError(.resourceConflict,
                        "queue '\(queue.name)' exists for exchange \(owner ?? "none"); is another exchange of this destination case and batch running?")
                }
                logger.notice("queue exists with other attributes; keeping them", metadata: ["queue": "\(queue.name)", "jobId": "\(plan.jobID)"])
            }
        }
        for subscription in plan.subscriptions {
            try await store.record(
                jobID: plan.jobID, kind: .subscription, name: subscription.queue,
                detail: subscription.topic ?? broker.configuration.defaultTopic)
            try await broker.subscribe(subscription.queue, topic: subscription.topic, filterPolicy: subscription.filterPolicy)
        }
        for spec in plan.deployments {
            try await store.record(jobID: plan.jobID, kind: .deployment, name: spec.id, detail: spec.program)
            try await deployments.upsert(spec)
        }
        logger.info("exchange provisioned", metadata: [
            "jobId": "\(plan.jobID)", "queues": "\(plan.queues.count)", "deployments": "\(plan.deployments.count)",
        ])
    }

    /// The shared dead-letter queue with the attributes its processor gives it (14 days, program
    /// `dlq`), unless it exists already (with whatever attributes).
    private func ensureDeadLetterQueue(_ name: String) async throws {
        guard try await broker.queue(named: name) == nil else { return }
        do {
            try await broker.createQueue(name, attributes: QueueAttributes(retention: .seconds(14 * 86_400), program: "dlq"))
        } catch let error as BrokerError where error.code == .queueAlreadyExists {
            // Created by another process a moment ago.
        }
    }
}
