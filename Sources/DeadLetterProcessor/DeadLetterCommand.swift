import ArgumentParser
import Foundation
import WorkerRuntime

/// `exchanger-dlq`: the global processor of the dead-letter queue.
public struct DeadLetterCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-dlq",
        abstract: "Consume exch-dlq: record every dead letter for inspection and redrive, and publish its error event.",
        discussion: "Settings (environment): EXCHANGER_DLQ_QUEUE (exch-dlq). Inspect and redrive with `exchanger dlq`.")

    @OptionGroup public var options: WorkerOptions

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = DeadLetterSettings(environment: environment)
        try await WorkerProcess.run(
            executable: "exchanger-dlq", program: DeadLetterHandler.program, options: options, defaultQueue: settings.queue,
            environment: environment,
            prepare: { context in try await DeadLetterHandler.prepare(broker: context.broker, settings: settings, logger: context.logger) },
            makeHandler: { context in DeadLetterHandler(broker: context.broker) })
    }
}
