import ArgumentParser
import CaseDatabase
import Foundation
import WorkerRuntime

/// `exchanger-status-update`: the global processor that writes exchange batch statuses into the
/// destination case databases.
public struct StatusUpdateCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-status-update",
        abstract: "Consume exch-status and write each batch's status into the destination case database.",
        discussion: """
            Settings (environment): EXCHANGER_CASE_DATABASE_URL (required, a template with {database}), \
            EXCHANGER_CASE_DATABASE_PREFIX (case), EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS (16), \
            EXCHANGER_STATUS_QUEUE (exch-status), EXCHANGER_DLQ_QUEUE (exch-dlq), EXCHANGER_STATUS_MAX_RECEIVE_COUNT (3).
            """)

    @OptionGroup public var options: WorkerOptions

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = try StatusUpdateSettings(environment: environment)
        try await WorkerProcess.run(
            executable: "exchanger-status-update", program: StatusUpdateHandler.program, options: options,
            defaultQueue: settings.queue, environment: environment,
            prepare: { context in
                try await StatusUpdateHandler.prepare(broker: context.broker, settings: settings, logger: context.logger)
            },
            makeHandler: { context in
                StatusUpdateHandler(store: BatchStatusStore(settings: settings.caseDatabase, logger: context.logger))
            })
    }
}
