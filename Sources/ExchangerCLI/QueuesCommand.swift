import ArgumentParser
import Broker
import ExchangerLogging
import Foundation

/// `exchanger queues …`: inspect and operate queues.
struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues",
        abstract: "List queues with their counters, and operate on queues and messages.",
        subcommands: [List.self, Create.self, Delete.self, Purge.self, Seal.self, Unseal.self, Redrive.self, Send.self, Receive.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List queues with visible / in-flight / delayed counts.")
        @OptionGroup var options: DatabaseOptions
        @Option(help: "Only queues whose name starts with this.") var prefix: String?
        @Option(help: "Only the queues of this exchange.") var exchange: String?
        @Flag(help: "One JSON object per line instead of a table.") var json = false

        func run() async throws {
            JSONLogHandler.bootstrapOnce(program: "exchanger")
            let broker = try await options.connect()
            defer { Task { await broker.close() } }
            let queues = try await broker.listQueues(QueueFilter(namePrefix: prefix, exchangeID: exchange))
            let counters = try await broker.counters(queues.map(\.name))
            if json {
                for queue in queues {
                    let counter = counters[queue.name] ?? QueueCounters(visible: 0, inFlight: 0, delayed: 0)
                    let object: [String: Any] = [
                        "name": queue.name, "visible": counter.visible, "inFlight": counter.inFlight, "delayed": counter.delayed,
                        "sealed": queue.sealed, "exchangeId": queue.attributes.exchangeID ?? NSNull(),
                        "program": queue.attributes.program ?? NSNull(), "deadLetterQueue": queue.attributes.deadLetterQueue ?? NSNull(),
                    ]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                }
            } else {
                let width = max(5, queues.map(\.name.count).max() ?? 0)
                print("QUEUE".padding(toLength: width, withPad: " ", startingAt: 0) + "  VISIBLE  IN-FLIGHT  DELAYED  SEALED  EXCHANGE")
                for queue in queues {
                    let counter = counters[queue.name] ?? QueueCounters(visible: 0, inFlight: 0, delayed: 0)
                    print(queue.name.padding(toLength: width, withPad: " ", startingAt: 0)
                        + "  " + pad(counter.visible, 7) + "  " + pad(counter.inFlight, 9) + "  " + pad(counter.delayed, 7)
                        + "  " + (queue.sealed ? "yes   " : "no    ") + "  " + (queue.attributes.exchangeID ?? "-"))
                }
            }
            await broker.close()
        }

        private func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: " ", count: max(0, width - text.count)) + text
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a queue (no-op when it exists with the same attributes).")
        @OptionGroup var options: DatabaseOptions
        @Argument(help: "Queue name ([A-Za-z0-9_.-]{1,80}).") var name: String
        @Option(help: "Visibility timeout in seconds (0–43200).") var visibilityTimeout: Double = 30
        @Option(help: "Receives before a message moves to the dead-letter queue.") var maxReceiveCount: Int = 3
        @Option(help: "Dead-letter queue name.") var deadLetterQueue: String?
        @Option(help: "Default delay in seconds (0–900).") var delay: Double = 0
        @Option(help: "Retention in seconds (60–1209600).") var retention: Double = 345_600
        @Option(help: "Largest message body in bytes.") var maxMessageBytes: Int = 262_144
        @Option(help: "Owning exchange id.") var exchange: String?
        @Option(help: "Program that consumes the queue.") var program: String?

        func run() async throws {
            JSONLogHandler.bootstrapOnce(program: "exchanger")
            let broker = try await options.connect()
            do {
                let info = try await broker.createQueue(name, attributes: QueueAttributes(
                    visibilityTimeout: seconds(visibilityTimeout), maxReceiveCount: maxReceiveCount, deadLetterQueue: deadLetterQueue,
                    delay: seconds(delay), retention: seconds(retention), maxMessageBytes: maxMessageBytes, exchangeID: exchange,
                    program: program))
                print(info.name)
            } catch {
                await broker.close()
                throw error
            }
            await broker.close()
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a queue with its messages and subscriptions.")
        @OptionGroup var options: DatabaseOptions
        @Argument var name: String
        func run() async throws {
            try await withBroker(options) { try await $0.deleteQueue(name) }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every message of a queue.")
        @OptionGroup var options: DatabaseOptions
        @Argument var name: String
        func run() async throws {
            try await withBroker(options) { print("purged \(try await $0.purge(name)) messages") }
        }
    }

    struct Seal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Seal queues: refuse sends, remove their subscriptions.")
        @OptionGroup var options: DatabaseOptions
        @Argument var names: [String]
        func run() async throws {
            try await withBroker(options) { broker in
                for (name, counter) in try await broker.seal(names).sorted(by: { $0.key < $1.key }) {
                    print("\(name): sealed, \(counter.total) messages left")
                }
            }
        }
    }

    struct Unseal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lift the seal of queues.")
        @OptionGroup var options: DatabaseOptions
        @Argument var names: [String]
        func run() async throws {
            try await withBroker(options) { try await $0.unseal(names) }
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move messages from a dead-letter queue back to their source queues.")
        @OptionGroup var options: DatabaseOptions
        @Argument(help: "The dead-letter queue.") var deadLetterQueue: String
        @Option(help: "Send every message here instead of its source queue.") var to: String?
        @Option(help: "Most messages moved per second.") var rate: Int = 500
        func run() async throws {
            try await withBroker(options) { print("redrove \(try await $0.redrive(from: deadLetterQueue, to: to, perSecond: rate)) messages") }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send messages to a queue.")
        @OptionGroup var options: DatabaseOptions
        @Argument var queue: String
        @Option(help: "Message body.") var body: String
        @Option(help: "How many copies to send.") var count: Int = 1
        @Option(help: "Messages per batch.") var batch: Int = 100
        @Option(help: "Delay in seconds.") var delay: Double?
        @Option(name: .customLong("attribute"), help: "String attribute key=value (repeatable).") var attributes: [String] = []

        func run() async throws {
            var parsed: MessageAttributes = [:]
            for pair in attributes {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("attribute '\(pair)' is not key=value") }
                parsed[parts[0]] = .string(parts[1])
            }
            let message = OutgoingMessage(body: body, attributes: parsed, delay: delay.map(seconds))
            try await withBroker(options) { broker in
                var sent = 0
                while sent < count {
                    let take = min(batch, count - sent)
                    try await broker.sendBatch(queue, Array(repeating: message, count: take))
                    sent += take
                }
                print("sent \(sent) messages")
            }
        }
    }

    /// Receives and prints messages as JSON lines: a diagnostic consumer, also used by the tests
    /// as a real consumer process.
    struct Receive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receive messages and print them as JSON lines (optionally deleting them).")
        @OptionGroup var options: DatabaseOptions
        @Argument var queue: String
        @Option(help: "Messages per receive.") var maxMessages: Int = 10
        @Option(help: "Long-poll wait in seconds.") var wait: Double = 1
        @Option(help: "Visibility timeout in seconds (default: the queue's).") var visibilityTimeout: Double?
        @Flag(help: "Delete each message after printing it.") var delete = false
        @Option(help: "Stop after this many messages (default: one receive).") var count: Int?
        @Option(help: "With --count: stop after this many seconds without a message.") var idleExit: Double = 10
        @Option(help: "Pretend to work this many milliseconds per batch before deleting (diagnostics, tests).") var processDelayMs: Int = 0

        func run() async throws {
            JSONLogHandler.bootstrapOnce(program: "exchanger")
            let broker = try await options.connect()
            var received = 0
            var lastMessage = ContinuousClock.now
            repeat {
                let messages: [ReceivedMessage]
                do {
                    messages = try await broker.receive(
                        queue, maxMessages: maxMessages, wait: seconds(wait), visibilityTimeout: visibilityTimeout.map(seconds))
                } catch let error as BrokerError where error.isTransient {
                    // The database went away (restart, failover): back off and go on.
                    FileHandle.standardError.write(Data("receive failed, retrying: \(error)\n".utf8))
                    try await Task.sleep(for: .milliseconds(200))
                    continue
                }
                if messages.isEmpty {
                    if count == nil || ContinuousClock.now - lastMessage > seconds(idleExit) { break }
                    continue
                }
                lastMessage = ContinuousClock.now
                for message in messages {
                    let object: [String: Any] = [
                        "messageId": message.messageID, "body": message.body, "receiveCount": message.receiveCount,
                        "receipt": message.receipt.description, "eventId": message.eventID ?? NSNull(),
                        "sourceQueue": message.sourceQueue ?? NSNull(),
                    ]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    FileHandle.standardOutput.write(data + Data("\n".utf8))
                }
                if processDelayMs > 0 { try await Task.sleep(for: .milliseconds(processDelayMs)) }
                if delete {
                    var pending = messages.map(\.receipt)
                    while !pending.isEmpty {
                        do {
                            let outcome = try await broker.deleteBatch(queue, pending)
                            for (receipt, error) in outcome.failed {
                                FileHandle.standardError.write(Data("delete failed for \(receipt): \(error)\n".utf8))
                            }
                            pending = []
                        } catch let error as BrokerError where error.isTransient {
                            try await Task.sleep(for: .milliseconds(200))
                        }
                    }
                }
                received += messages.count
            } while count.map { received < $0 } ?? false
            await broker.close()
        }
    }
}

/// Connects, runs `body`, and closes the broker whatever happens.
func withBroker(_ options: DatabaseOptions, _ body: (Broker) async throws -> Void) async throws {
    JSONLogHandler.bootstrapOnce(program: "exchanger")
    let broker = try await options.connect()
    do {
        try await body(broker)
    } catch {
        await broker.close()
        throw error
    }
    await broker.close()
}
