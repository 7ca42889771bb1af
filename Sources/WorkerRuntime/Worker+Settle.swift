import Broker
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage

extension Worker {
    /// Ends every handled message of a batch: commits the successes (one transaction for the
    /// batch, falling back to one per message if any lease was lost), schedules retries, and
    /// dead-letters what cannot succeed.
    func settle(_ handled: [Handled], queue: QueueInfo) async {
        var done: [(Handled, HandlerOutcome)] = []
        for item in handled {
            switch item.result {
            case .success(let outcome):
                done.append((item, outcome))
            case .failure(let error):
                switch WorkerError.classify(error) {
                case .silent:
                    item.logger.info("already done; acknowledging", metadata: ["reason": "\(error)"])
                    done.append((item, .alreadyDone(reason: "\(error)", .none)))
                case .permanent:
                    await deadLetter(item, queue: queue, error: error, reason: "permanent")
                case .recoverable:
                    if item.message.receiveCount >= queue.attributes.maxReceiveCount {
                        await deadLetter(item, queue: queue, error: error, reason: "retriesExhausted")
                    } else {
                        await retryLater(item, queue: queue, error: error)
                    }
                }
            }
        }
        guard !done.isEmpty else { return }
        await commit(done, queue: queue)
    }

    // MARK: Success

    /// A success ready to commit: its outgoing messages staged where needed.
    private struct Prepared: Sendable {
        var item: Handled
        var outcome: HandlerOutcome
        var messages: [QueuedMessage]
        var stagedOutput: [ObjectKey]
    }

    private func commit(_ done: [(Handled, HandlerOutcome)], queue: QueueInfo) async {
        var prepared: [Prepared] = []
        for (item, outcome) in done {
            do {
                let (messages, staged) = try await stageOutgoing(outcome.effects.messages)
                prepared.append(Prepared(item: item, outcome: outcome, messages: messages, stagedOutput: staged))
            } catch {
                await failAfterHandling(item, queue: queue, error: error)
            }
        }
        guard !prepared.isEmpty else { return }
        let batch = prepared
        // Staged input bodies of the messages whose acknowledgement committed. Only those may go:
        // a message whose lease was lost, that is retried or dead-lettered, still refers to its body.
        var acknowledged: [ObjectKey] = []
        do {
            try await broker.transaction { tx in
                try await Self.apply(batch.flatMap(\.outcome.effects.events), batch.flatMap(\.messages), tx: tx)
                let receipts = batch.map(\.item.message.receipt)
                let outcome = try await tx.deleteBatch(queue.name, receipts)
                if let (_, error) = outcome.failed.first { throw error }
            }
            for entry in prepared { finished(entry) }
            acknowledged = prepared.compactMap(\.item.stagedInput)
        } catch {
            // One lost lease (or any failure) must not cost the others: one transaction each.
            if prepared.count > 1 {
                logger.debug("batch commit failed; committing one by one", metadata: ["error": "\(error)"])
            }
            for entry in prepared {
                do {
                    try await broker.transaction { tx in
                        try await Self.apply(entry.outcome.effects.events, entry.messages, tx: tx)
                        try await tx.delete(queue.name, entry.item.message.receipt)
                    }
                    finished(entry)
                    if let key = entry.item.stagedInput { acknowledged.append(key) }
                } catch let error as BrokerError where error.code == .staleReceipt {
                    entry.item.logger.warning("lease lost before the acknowledgement; the message will be handled again")
                    metrics.count("lease_lost", queue: queue.name)
                    await stager.discard(entry.stagedOutput, logger: entry.item.logger)
                } catch {
                    await stager.discard(entry.stagedOutput, logger: entry.item.logger)
                    await failAfterHandling(entry.item, queue: queue, error: error)
                }
            }
        }
        await stager.discard(acknowledged, logger: logger)
    }

    /// Publishes the events in one batch and sends the messages in one batch per queue (a batch
    /// of 50 documents costs a handful of statements, not a hundred).
    private static func apply(_ events: [EventEnvelope], _ messages: [QueuedMessage], tx: BrokerTransaction) async throws {
        if !events.isEmpty { _ = try await tx.publishBatch(try events.map { try $0.topicMessage() }) }
        var order: [String] = []
        var byQueue: [String: [OutgoingMessage]] = [:]
        for message in messages {
            if byQueue[message.queue] == nil { order.append(message.queue) }
            byQueue[message.queue, default: []].append(message.message)
        }
        for queue in order { _ = try await tx.sendBatch(queue, byQueue[queue] ?? []) }
    }

    private func finished(_ entry: Prepared) {
        switch entry.outcome {
        case .success:
            // One line per document and stage at info, so `exchanger logs --job J` follows a
            // document through the stages; other messages (events of the global processors) at debug.
            if entry.item.logger[metadataKey: "documentId"] != nil {
                entry.item.logger.info("document done")
            } else {
                entry.item.logger.debug("message handled")
            }
            metrics.count("success", queue: entry.item.message.queue)
        case .alreadyDone(let reason, _):
            entry.item.logger.info("message was already handled; acknowledged", metadata: ["reason": "\(reason)"])
            metrics.count("silent", queue: entry.item.message.queue)
        }
    }

    /// Outgoing messages with oversized bodies staged; returns the staged keys too.
    private func stageOutgoing(_ messages: [QueuedMessage]) async throws -> ([QueuedMessage], [ObjectKey]) {
        var staged: [ObjectKey] = []
        var result: [QueuedMessage] = []
        do {
            for message in messages {
                let target = try await queueInfo(message.queue)
                let (prepared, key) = try await stager.prepare(message.message, queue: message.queue, maxBytes: target.attributes.maxMessageBytes)
                if let key { staged.append(key) }
                result.append(QueuedMessage(queue: message.queue, prepared))
            }
        } catch {
            await stager.discard(staged, logger: logger)
            throw error
        }
        return (result, staged)
    }

    /// A message whose handling worked but whose commit failed: retried like a recoverable error
    /// unless the error is permanent (its handler must be idempotent either way).
    private func failAfterHandling(_ item: Handled, queue: QueueInfo, error: any Error) async {
        switch WorkerError.classify(error) {
        case .permanent: await deadLetter(item, queue: queue, error: error, reason: "permanent")
        default:
            if item.message.receiveCount >= queue.attributes.maxReceiveCount {
                await deadLetter(item, queue: queue, error: error, reason: "retriesExhausted")
            } else {
                await retryLater(item, queue: queue, error: error)
            }
        }
    }

    // MARK: Failure

    private func retryLater(_ item: Handled, queue: QueueInfo, error: any Error) async {
        var delay = configuration.backoff.delay(attempt: item.message.receiveCount)
        if let after = (error as? WorkerError)?.retryAfter { delay = max(delay, after) }
        delay = min(delay, QueueAttributes.maxVisibilityTimeout)
        item.logger.warning(
            "handler failed; retrying later",
            metadata: ["error": "\(error)", "retryInMs": "\(delay / .milliseconds(1))"])
        metrics.count("retry", queue: queue.name)
        do {
            try await broker.changeVisibility(queue.name, item.message.receipt, timeout: delay)
        } catch {
            // The lease ends on its own; the message comes back then.
            item.logger.warning("could not schedule the retry; the lease will expire instead", metadata: ["error": "\(error)"])
        }
    }

    private func deadLetter(_ item: Handled, queue: QueueInfo, error: any Error, reason: String) async {
        guard let deadLetterQueue = queue.attributes.deadLetterQueue else {
            let delay = configuration.backoff.cap
            item.logger.error(
                "message cannot succeed but the queue has no dead-letter queue; keeping it hidden",
                metadata: ["error": "\(error)", "reason": "\(reason)", "retryInMs": "\(delay / .milliseconds(1))"])
            metrics.count("failed_no_dlq", queue: queue.name)
            try? await broker.changeVisibility(queue.name, item.message.receipt, timeout: delay)
            return
        }
        var staged: [ObjectKey] = []
        do {
            let envelope = DeadLetterEnvelope(message: item.message, queue: queue, error: "\(error)", reason: reason)
            let target = try await queueInfo(deadLetterQueue)
            let (outgoing, key) = try await stager.prepare(try envelope.outgoing(), queue: deadLetterQueue, maxBytes: target.attributes.maxMessageBytes)
            if let key { staged.append(key) }
            try await broker.transaction { tx in
                _ = try await tx.send(deadLetterQueue, outgoing)
                try await tx.delete(queue.name, item.message.receipt)
            }
            item.logger.error(
                "message dead-lettered", metadata: ["error": "\(error)", "reason": "\(reason)", "deadLetterQueue": "\(deadLetterQueue)"])
            metrics.count("dead_lettered", queue: queue.name)
        } catch let failure as BrokerError where failure.code == .staleReceipt {
            await stager.discard(staged, logger: item.logger)
            item.logger.warning("lease lost before dead-lettering; the message will be handled again")
        } catch let failure {
            await stager.discard(staged, logger: item.logger)
            item.logger.error(
                "could not dead-letter the message; it returns when its lease ends",
                metadata: ["error": "\(error)", "deadLetterError": "\(failure)"])
        }
    }
}
