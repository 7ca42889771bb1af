import ArgumentParser
import Broker
import DeadLetterProcessor
import ExchangerLogging
import Foundation

/// `exchanger dlq …`: inspect and redrive the dead letters `exchanger-dlq` recorded.
struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List, show and redrive recorded dead letters.",
        subcommands: [List.self, Show.self, Redrive.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List recorded dead letters, newest first.")
        @OptionGroup var options: DatabaseOptions
        @Option(help: "Only dead letters of this queue.") var queue: String?
        @Option(help: "Only dead letters of this job.") var job: String?
        @Option(help: "Most rows shown.") var limit: Int = 100
        @Flag(help: "Only those never redriven.") var pending = false
        @Flag(help: "One JSON object per line instead of a table.") var json = false

        func run() async throws {
            try await withBroker(options) { broker in
                let records = try await DeadLetterStore(broker: broker).list(
                    DeadLetterFilter(queue: queue, jobID: job, onlyPending: pending), limit: limit)
                if json {
                    for record in records { print(try jsonLine(record.jsonObject())) }
                    return
                }
                let rows = records.map { record in
                    [
                        String(record.id), record.queue, record.program ?? "-", record.jobID ?? "-",
                        record.documentID.map(String.init) ?? "-", record.reason, truncate(oneLine(record.error), 60),
                        timestamp(record.failedAt), record.redrivenAt.map { _ in "yes (\(record.redriveCount))" } ?? "no",
                    ]
                }
                printTable(["ID", "QUEUE", "PROGRAM", "JOB", "DOCUMENT", "REASON", "ERROR", "FAILED AT", "REDRIVEN"], rows)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter with its body and attributes.")
        @OptionGroup var options: DatabaseOptions
        @Argument(help: "The dead letter's id (from `exchanger dlq list`).") var id: Int64
        @Flag(help: "Print one JSON object instead of text.") var json = false

        func run() async throws {
            try await withBroker(options) { broker in
                guard let record = try await DeadLetterStore(broker: broker).get(id: id) else {
                    throw DeadLetterError(.notFound, "no dead letter has id \(id)")
                }
                if json {
                    print(try jsonLine(record.jsonObject()))
                    return
                }
                let fields: [(String, String)] = [
                    ("id", String(record.id)), ("message id", record.messageID), ("queue", record.queue),
                    ("program", record.program ?? "-"), ("exchange", record.exchangeID ?? "-"), ("job", record.jobID ?? "-"),
                    ("case", record.caseID.map(String.init) ?? "-"), ("source case", record.sourceCaseID.map(String.init) ?? "-"),
                    ("batch", record.batchID.map(String.init) ?? "-"), ("document", record.documentID.map(String.init) ?? "-"),
                    ("receive count", String(record.receiveCount)), ("reason", record.reason), ("error", record.error),
                    ("failed at", timestamp(record.failedAt)), ("recorded at", timestamp(record.recordedAt)),
                    ("redriven at", record.redrivenAt.map(timestamp) ?? "never"), ("redrive count", String(record.redriveCount)),
                ]
                for (name, value) in fields { print((name + ":").padding(toLength: 15, withPad: " ", startingAt: 0) + value) }
                let object = record.jsonObject()
                print("attributes:")
                print(try pretty(object["attributes"] ?? [String: Any]()))
                print("body:")
                print(try pretty(object["body"] ?? record.body))
            }
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to their queue (or another one) as new messages.",
            discussion: """
                Each record's original body and attributes are sent in one transaction with marking the record \
                redriven. A target queue that is missing or sealed fails that record, which stays as it was; \
                the command then exits with status 1.
                """)
        @OptionGroup var options: DatabaseOptions
        @Argument(help: "Ids of the dead letters to redrive.") var ids: [Int64] = []
        @Flag(help: "Redrive every dead letter never redriven (narrowed by --queue / --job).") var all = false
        @Option(help: "With --all: only dead letters of this queue.") var queue: String?
        @Option(help: "With --all: only dead letters of this job.") var job: String?
        @Option(help: "Send to this queue instead of each dead letter's original queue.") var to: String?

        func validate() throws {
            if all == !ids.isEmpty { throw ValidationError("name the dead letters to redrive by id, or pass --all (not both)") }
            if !all, queue != nil || job != nil { throw ValidationError("--queue and --job narrow --all; with ids they do not apply") }
        }

        func run() async throws {
            var failed = 0
            try await withBroker(options) { broker in
                let store = DeadLetterStore(broker: broker)
                let results = all
                    ? try await store.redriveAll(DeadLetterFilter(queue: queue, jobID: job), to: to)
                    : try await store.redrive(ids: ids, to: to)
                for result in results {
                    if let messageID = result.messageID {
                        print("\(result.id): redriven to \(result.target ?? "-") as message \(messageID)")
                    } else {
                        failed += 1
                        print("\(result.id): not redriven: \(result.error ?? "unknown error")")
                    }
                }
                print("redrove \(results.count - failed) of \(results.count) dead letters")
            }
            if failed > 0 { throw ExitCode.failure }
        }
    }
}

private func jsonLine(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
}

private func pretty(_ value: Any) throws -> String {
    guard JSONSerialization.isValidJSONObject(value) else { return "\(value)" }
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
}

private func timestamp(_ date: Date) -> String {
    date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
}

private func oneLine(_ text: String) -> String {
    text.replacingOccurrences(of: "\n", with: " ")
}

private func truncate(_ text: String, _ length: Int) -> String {
    text.count <= length ? text : String(text.prefix(length - 1)) + "…"
}

/// Prints rows under a header, each column as wide as its widest cell.
private func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}
