import ConcurrencySupport
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Supervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let sample = [
    #"{"time":"2026-11-25T12:00:00.001Z","level":"info","msg":"copied document","program":"s3-copy","instance":0,"pid":100,"stream":"stdout","child_program":"exchanger-s3-copy","jobId":"job-a","caseId":42,"documentId":1}"#,
    #"{"time":"2026-11-25T12:00:00.002Z","level":"warning","msg":"slow response","program":"s3-copy","instance":1,"pid":101,"stream":"stderr","jobId":"job-b","caseId":"43"}"#,
    "plain text line",
    #"{"time":"2026-11-25T12:00:00.004Z","level":"error","msg":"upload failed","program":"exchanger-uploader","jobId":"job-a","caseId":42}"#,
    #"{"time":"2026-11-25T12:00:00.005Z","level":"debug","msg":"polling","program":"supervisor"}"#,
    #"{"time":"2026-11-25T12:00:00.006Z","level":"critical","msg":"copied nothing","program":"s3-copy","instance":0,"pid":100,"jobId":"job-a","caseId":42}"#,
]

/// The sample lines (numbered from 1) that `filter` lets through.
private func matching(_ filter: LogFilter) -> [Int] {
    sample.enumerated().filter { filter.matches(line: $0.element) }.map { $0.offset + 1 }
}

private func lines(_ numbers: [Int]) -> String {
    numbers.map { sample[$0 - 1] + "\n" }.joined()
}

@Suite struct LogsCommandTests {
    // MARK: - Filter and format (pure)

    @Test func filtersOnFields() {
        #expect(matching(LogFilter()) == [1, 2, 3, 4, 5, 6])
        #expect(matching(LogFilter(job: "job-a")) == [1, 4, 6])
        #expect(matching(LogFilter(program: "s3-copy")) == [1, 2, 6])
        #expect(matching(LogFilter(program: "exchanger-s3-copy")) == [1, 2, 6])
        #expect(matching(LogFilter(program: "uploader")) == [4])
        #expect(matching(LogFilter(program: "supervisor")) == [5])
        #expect(matching(LogFilter(caseID: "42")) == [1, 4, 6])
        #expect(matching(LogFilter(caseID: "43")) == [2])
        #expect(matching(LogFilter(documentID: "1")) == [1], "a number field matches its decimal text")
        #expect(matching(LogFilter(job: "job-a", documentID: "2")) == [])
        #expect(matching(LogFilter(minimumLevel: .warning)) == [2, 4, 6])
        #expect(matching(LogFilter(minimumLevel: .error)) == [4, 6])
        #expect(matching(LogFilter(minimumLevel: .trace)) == [1, 2, 4, 5, 6])
        #expect(matching(LogFilter(grep: "copied")) == [1, 6])
        #expect(matching(LogFilter(grep: "plain")) == [3])
        #expect(matching(LogFilter(job: "job-a", minimumLevel: .error)) == [4, 6])
        #expect(matching(LogFilter(job: "job-a", program: "s3-copy", grep: "nothing")) == [6])
        #expect(matching(LogFilter(job: "missing")) == [])
    }

    @Test func parsesLevelNames() {
        #expect(LogLevel(name: "WARN") == .warning)
        #expect(LogLevel(name: "notice") == .notice)
        #expect(LogLevel(name: "fatal") == .critical)
        #expect(LogLevel(name: "verbose") == nil)
        #expect(LogLevel.allCases.map(\.description) == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        #expect(LogLevel.notice < .warning)
    }

    @Test func rendersText() {
        let first = String(decoding: LogOutputFormat.text.render(LogRecord(sample[0])), as: UTF8.self)
        #expect(first == "2026-11-25T12:00:00.001Z info s3-copy[0] 100: copied document child_program=exchanger-s3-copy jobId=job-a caseId=42 documentId=1\n")
        let second = String(decoding: LogOutputFormat.text.render(LogRecord(sample[1])), as: UTF8.self)
        #expect(second == "2026-11-25T12:00:00.002Z warning s3-copy[1] 101: slow response stream=stderr jobId=job-b caseId=43\n")
        let plain = String(decoding: LogOutputFormat.text.render(LogRecord(sample[2])), as: UTF8.self)
        #expect(plain == "plain text line\n")
        let quoted = String(decoding: LogOutputFormat.text.render(LogRecord(#"{"msg":"two\nlines","note":"a b","empty":"","obj":{"k":1}}"#)), as: UTF8.self)
        #expect(quoted == #"two\nlines note="a b" empty="" obj={"k":1}"# + "\n")
        let json = String(decoding: LogOutputFormat.json.render(LogRecord(sample[3] + "\r")), as: UTF8.self)
        #expect(json == sample[3] + "\n")
    }

    @Test func tailPrintsTheLastMatchingLinesOfAFile() async throws {
        try await withTemporaryDirectory { directory in
            let input = directory.appendingPathComponent("supervisor.log").path
            try (sample.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
            let outputPath = directory.appendingPathComponent("out").path
            for (options, expected) in [
                (LogTail.Options(filter: LogFilter(job: "job-a"), lines: 2), lines([4, 6])),
                (LogTail.Options(lines: 0), ""),
                (LogTail.Options(lines: 100), lines([1, 2, 3, 4, 5, 6])),
                (LogTail.Options(filter: LogFilter(minimumLevel: .error)), lines([4, 6])),
            ] {
                let output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                try #require(output >= 0)
                try LogTail(path: input, options: options, output: output).run()
                close(output)
                #expect(try String(contentsOfFile: outputPath, encoding: .utf8) == expected)
            }
            // An unterminated last line counts when not following.
            try sample[0].write(toFile: input, atomically: true, encoding: .utf8)
            let output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            try LogTail(path: input, options: LogTail.Options(), output: output).run()
            close(output)
            #expect(try String(contentsOfFile: outputPath, encoding: .utf8) == lines([1]))
        }
    }

    // MARK: - The exchanger binary

    @Test func commandFiltersAFile() async throws {
        try await withTemporaryDirectory { directory in
            let input = directory.appendingPathComponent("supervisor.log").path
            try (sample.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
            var result = try await runExchanger(["logs", "--file", input, "--job", "job-a"])
            #expect(result.status == 0)
            #expect(result.output == lines([1, 4, 6]))
            result = try await runExchanger(["logs", "--file", input, "--program", "s3-copy", "-n", "2"])
            #expect(result.output == lines([2, 6]))
            result = try await runExchanger(["logs", "--file", input, "--case", "42", "--level", "error", "--format", "text"])
            #expect(
                result.output
                    == "2026-11-25T12:00:00.004Z error exchanger-uploader: upload failed jobId=job-a caseId=42\n"
                    + "2026-11-25T12:00:00.006Z critical s3-copy[0] 100: copied nothing jobId=job-a caseId=42\n")
            result = try await runExchanger(["logs", "--file", input, "--job", "job-a", "--document", "1"])
            #expect(result.output == lines([1]))
            result = try await runExchanger(["logs", "--file", input, "--grep", "text"])
            #expect(result.output == lines([3]))
            result = try await runExchanger(["logs", "--file", input, "--level", "loud"])
            #expect(result.status == 64)
            result = try await runExchanger(["logs", "--file", directory.appendingPathComponent("missing.log").path])
            #expect(result.status != 0)
        }
    }

    @Test func commandReadsStandardInput() async throws {
        try await withTemporaryDirectory { directory in
            let input = directory.appendingPathComponent("supervisor.log").path
            try (sample.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
            let child = try ChildProcess(
                executable: "/bin/sh", arguments: ["-c", "cat '\(input)' | '\(TestEnvironment.exchanger)' logs --level warning --file -"])
            let output = try await child.readAll()
            #expect(try await child.wait() == 0)
            #expect(output == lines([2, 4, 6]))
        }
    }

    @Test func followPicksUpAppendedLinesRotationAndTruncation() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("supervisor.log").path
            try (sample.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            let child = try ChildProcess(
                executable: TestEnvironment.exchanger,
                arguments: ["logs", "--file", path, "-f", "--poll-interval", "0.05", "--program", "s3-copy", "-n", "1"])
            let received = LockedBox<[String]>([])
            let reader = Task {
                for try await line in child.lines() { received.withLock { $0.append(line) } }
            }
            func line(_ message: String, program: String = "exchanger-s3-copy") -> String {
                #"{"level":"info","msg":"\#(message)","program":"\#(program)"}"#
            }
            func append(_ text: String, to file: String = path) throws {
                let handle = try #require(FileHandle(forWritingAtPath: file))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data(text.utf8))
                try handle.close()
            }
            func arrived(_ expected: [String]) async -> Bool {
                await eventually(timeout: .seconds(10)) { received.withLock { $0 } == expected }
            }

            // The last matching line of the existing content.
            #expect(await arrived([sample[5]]))
            try append(line("appended one") + "\n" + line("other program", program: "exchanger-uploader") + "\n")
            #expect(await arrived([sample[5], line("appended one")]))
            // A line written in two parts comes out once, whole.
            try append(#"{"level":"info","msg":"#)
            try await Task.sleep(for: .milliseconds(150))
            try append(#""in two parts","program":"s3-copy"}"# + "\n")
            let twoParts = #"{"level":"info","msg":"in two parts","program":"s3-copy"}"#
            #expect(await arrived([sample[5], line("appended one"), twoParts]))

            // Rotation: the last lines of the old file, then a new file at the path, read from its start.
            try append(line("last words of the old file") + "\n")
            try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
            try (line("after rotation one") + "\n" + line("after rotation two") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
            let rotated = [
                sample[5], line("appended one"), twoParts, line("last words of the old file"), line("after rotation one"),
                line("after rotation two"),
            ]
            #expect(await arrived(rotated))

            // Truncation in place: read again from the start.
            let truncated = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
            try #require(truncated >= 0)
            close(truncated)
            try await Task.sleep(for: .milliseconds(200))
            try append(line("after truncation") + "\n")
            #expect(await eventually { received.withLock { $0 }.last == line("after truncation") })

            child.signal(SIGTERM)
            #expect(try await child.wait() == 0)
            try await reader.value
            #expect(received.withLock { $0 }.filter { $0.contains("uploader") }.isEmpty)
        }
    }
}
