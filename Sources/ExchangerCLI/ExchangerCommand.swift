import ArgumentParser
import Broker
import ExchangerLogging
import Foundation
import Logging
import WorkerRuntime

/// The `exchanger` command line.
public struct ExchangerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger",
        abstract: "Document Exchanger: copies documents between eDiscovery cases.",
        subcommands: [RunCommand.self, SubmitCommand.self, StatusCommand.self, WatchCommand.self, CancelCommand.self, RetryCommand.self, MigrateCommand.self, CtlCommand.self, QueuesCommand.self, StorageCommand.self, DLQCommand.self, BenchCommand.self, LogsCommand.self, PsCommand.self, ScaleCommand.self, CaseCommand.self, SearchCommand.self, VerifyCommand.self, HealthCommand.self]
    )

    public init() {}
}

/// Options every command that talks to the broker takes.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Broker database URL: postgres://user@host:port/db or sqlite:///path/to/file.db.",
            discussion: "Defaults to the EXCHANGER_DATABASE_URL environment variable, else the file named by EXCHANGER_DATABASE_URL_FILE."))
    var database: String?

    /// The URL from the option or the environment (the same rule as the workers').
    func url() throws -> String {
        try WorkerOptions.resolveDatabaseURL(option: database, environment: ProcessInfo.processInfo.environment)
    }

    func connect() async throws -> Broker {
        try await Broker.connect(url: try url(), logger: Logger(label: "exchanger.broker"))
    }
}

/// Parses seconds given on the command line (fractions allowed) into a Duration.
func seconds(_ value: Double) -> Duration { .milliseconds(Int64((value * 1000).rounded())) }

/// `exchanger migrate`: applies pending control-database migrations.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply pending schema migrations to the broker database (safe to run concurrently).")

    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger")
        let url = try options.url()
        let applied = try await Broker.migrate(url: url)
        if applied.isEmpty {
            print("schema is up to date")
        } else {
            print("applied migrations: \(applied.map(String.init).joined(separator: ", "))")
        }
    }
}

/// A flag that is set once.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    /// Sets the flag; returns true the first time only.
    func set() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if value { return false }
        value = true
        return true
    }

    /// Whether the flag has been set.
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
