import ConcurrencySupport
import ExchangerTestSupport
import Foundation
import Supervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let time = "2026-11-25T12:00:00.123Z"
private let source = LogSource(program: "s3-copy", instance: 2, pid: 4711, stream: .stdout, fields: [("deploymentId", "d-1")])
private let head = #"{"program":"s3-copy","instance":2,"pid":4711,"stream":"stdout","deploymentId":"d-1""#

/// Parses an output line (which must be one JSON object).
private func object(_ line: String) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
}

@Suite struct LogMultiplexerTests {
    // MARK: - Formatter

    @Test func mergesAJSONLineByteExactWithTheSupervisorFieldsFirst() throws {
        let formatter = LogLineFormatter(source: source)
        let child = #"{"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"say \"hi\" \u00e9\n\\ ✓","program":"exchanger-s3-copy","#
            + #""n":-1.5e3,"zero":0,"obj":{"a":[1,2,{"b":null}],"c" : "d"},"arr":[ true , false ],"pid":4711,"stream":"stderr","e":{}}"#
        let output = formatter.format(child, time: time)
        let expected = head
            + #","time":"2026-01-02T03:04:05.678Z","level":"info","msg":"say \"hi\" \u00e9\n\\ ✓","child_program":"exchanger-s3-copy","#
            + #""n":-1.5e3,"zero":0,"obj":{"a":[1,2,{"b":null}],"c" : "d"},"arr":[ true , false ],"child_stream":"stderr","e":{}}"#
            + "\n"
        #expect(output == expected)
        let parsed = try #require(object(output))
        #expect(parsed["program"] as? String == "s3-copy")
        #expect(parsed["child_program"] as? String == "exchanger-s3-copy")
        #expect(parsed["pid"] as? Int == 4711)
        #expect(parsed["msg"] as? String == "say \"hi\" é\n\\ ✓")
    }

    @Test func collidingKeysAreDroppedWhenEqualAndRenamedWhenDifferent() {
        let formatter = LogLineFormatter(source: source)
        let same = formatter.format(#"{"program":"s3-copy","instance":2,"stream":"stdout","deploymentId":"d-1","a":1}"#, time: time)
        #expect(same == head + #","a":1}"# + "\n")
        let different = formatter.format(#"{"instance":"2","pid":1,"deploymentId":"other"}"#, time: time)
        #expect(different == head + #","child_instance":"2","child_pid":1,"child_deploymentId":"other"}"# + "\n")
        #expect(formatter.format("{}", time: time) == head + "}\n")
        #expect(formatter.format("  \t{ \"a\" : 1 , \"b\":[ ] }  ", time: time) == head + #","a":1,"b":[ ]}"# + "\n")
    }

    @Test func wrapsOtherLinesWithTimeLevelAndEscapedMessage() throws {
        let formatter = LogLineFormatter(source: source)
        let line = "panic: \"quoted\" back\\slash\ttab \u{01}ctl é"
        let output = formatter.format(line, time: time)
        #expect(output == head + #","time":"2026-11-25T12:00:00.123Z","level":"info","msg":"panic: \"quoted\" back\\slash\ttab \u0001ctl é"}"# + "\n")
        #expect(try #require(object(output))["msg"] as? String == line)

        var stderrSource = source
        stderrSource.stream = .stderr
        let warning = LogLineFormatter(source: stderrSource).format("oops", time: time)
        #expect(warning == #"{"program":"s3-copy","instance":2,"pid":4711,"stream":"stderr","deploymentId":"d-1","time":"2026-11-25T12:00:00.123Z","level":"warning","msg":"oops"}"# + "\n")
        #expect(formatter.format("", time: time) == head + #","time":"\#(time)","level":"info","msg":""}"# + "\n")
    }

    @Test func replacesInvalidUTF8() throws {
        let formatter = LogLineFormatter(source: source)
        // a, a stray byte, b, a truncated 3-byte sequence, c, a 4-byte emoji, an overlong "/" and a surrogate.
        let bytes: [UInt8] = [0x61, 0xFF, 0x62, 0xE2, 0x82, 0x63, 0xF0, 0x9F, 0x98, 0x80, 0xC0, 0xAF, 0xED, 0xA0, 0x80]
        let output = formatter.format(bytes, time: time)
        let message = try #require(object(output))["msg"] as? String
        #expect(message == String(decoding: bytes, as: UTF8.self))
        #expect(message == "a\u{FFFD}b\u{FFFD}c😀\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}")
        // Invalid UTF-8 inside a JSON string: not passed on as JSON, wrapped with the bytes replaced.
        let json: [UInt8] = Array(#"{"msg":"bad "#.utf8) + [0xFF] + Array(#""}"#.utf8)
        let wrapped = try #require(object(formatter.format(json, time: time)))
        #expect(wrapped["msg"] as? String == "{\"msg\":\"bad \u{FFFD}\"}")
        #expect(wrapped["level"] as? String == "info")
    }

    @Test func dropsTheCarriageReturnOfCRLFLines() {
        let formatter = LogLineFormatter(source: source)
        #expect(formatter.format("{\"a\":1}\r", time: time) == head + #","a":1}"# + "\n")
        #expect(formatter.format("text\r", time: time) == head + #","time":"\#(time)","level":"info","msg":"text"}"# + "\n")
    }

    @Test(arguments: [
        #"{"a":"#, #"{"a":1,}"#, #"{"a":01}"#, #"{"a":tru}"#, "[1,2]", #""str""#, #"{"a":1}x"#, #"{"a" 1}"#, "{'a':1}",
        #"{"a":"\x"}"#, #"{"a":"\u12"}"#, #"{"a":1}{"b":2}"#, #"{"a":1.}"#, #"{"a":-}"#, #"{"a":1e}"#, "{\"a\":\"tab\there\"}", "{", "",
        #"{"a":[1,2}"#, #"{"a":{"b":1]}"#, #"{1:2}"#,
    ])
    func wrapsBrokenJSON(line: String) throws {
        let output = LogLineFormatter(source: source).format(line, time: time)
        let parsed = try #require(object(output))
        #expect(parsed["msg"] as? String == line)
        #expect(parsed["time"] as? String == time)
    }

    @Test func wrapsTooDeeplyNestedJSON() throws {
        let deep = #"{"a":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"
        let parsed = try #require(object(LogLineFormatter(source: source).format(deep, time: time)))
        #expect(parsed["msg"] as? String == deep)
        let fine = #"{"a":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        #expect(LogLineFormatter(source: source).format(fine, time: time) == head + "," + fine.dropFirst() + "\n")
    }

    @Test func scannerYieldsTopLevelFieldsAndDecodesStrings() throws {
        let line = Array(#" {"a\"b":"x\u0041\ud83d\ude00","n":[1,{"k":2}]} "#.utf8)
        var fields: [JSONObjectScanner.Field] = []
        let ok = line.withUnsafeBufferPointer { JSONObjectScanner.scan($0, fields: &fields) }
        #expect(ok)
        #expect(fields.count == 2)
        let key = String(decoding: line[fields[0].key], as: UTF8.self)
        #expect(key == #"a\"b"#)
        let value = line.withUnsafeBufferPointer { JSONObjectScanner.decodeString(UnsafeBufferPointer(rebasing: $0[fields[0].value])) }
        #expect(value == "xA😀")
        #expect(String(decoding: line[fields[1].value], as: UTF8.self) == #"[1,{"k":2}]"#)
    }

    @Test func partialPiecesAreWrappedAndFlagged() throws {
        let formatter = LogLineFormatter(source: source)
        let partial = try #require(object(formatter.format(#"{"a":1}"#, piece: .partial, time: time)))
        #expect(partial["msg"] as? String == #"{"a":1}"#)
        #expect(partial["partial"] as? Bool == true)
        let last = try #require(object(formatter.format(#"{"a":1}"#, piece: .lastPiece, time: time)))
        #expect(last["msg"] as? String == #"{"a":1}"#)
        #expect(last["partial"] == nil)
    }

    /// Feeds `input` in chunks of `chunk` bytes and returns the pieces (with `finish`).
    private func pieces(_ input: [UInt8], chunk: Int, limit: Int = 16 * 1024) -> [(count: Int, piece: LogLineFormatter.Piece, bytes: [UInt8])] {
        var assembler = LogLineAssembler(limit: limit)
        var result: [(count: Int, piece: LogLineFormatter.Piece, bytes: [UInt8])] = []
        var offset = 0
        while offset < input.count {
            let end = min(input.count, offset + chunk)
            input[offset..<end].withUnsafeBufferPointer { buffer in
                assembler.feed(buffer) { bytes, piece in result.append((bytes.count, piece, Array(bytes))) }
            }
            offset = end
        }
        assembler.finish { bytes, piece in result.append((bytes.count, piece, Array(bytes))) }
        return result
    }

    @Test(arguments: [1, 1000, 4096, 65536])
    func splitsLinesLongerThanTheLimitExactlyAtTheLimit(chunk: Int) {
        let a = UInt8(ascii: "a")
        let newline = UInt8(ascii: "\n")
        // Exactly the limit: one whole line.
        let exact = pieces([UInt8](repeating: a, count: 16384) + [newline], chunk: chunk)
        #expect(exact.map(\.count) == [16384])
        #expect(exact.map(\.piece) == [.line])
        // One byte more: a partial piece of the limit, then the last piece.
        let over = pieces([UInt8](repeating: a, count: 16385) + [newline], chunk: chunk)
        #expect(over.map(\.count) == [16384, 1])
        #expect(over.map(\.piece) == [.partial, .lastPiece])
        // 40 KiB without a newline, then end of file.
        let long = pieces([UInt8](repeating: a, count: 40960), chunk: chunk)
        #expect(long.map(\.count) == [16384, 16384, 8192])
        #expect(long.map(\.piece) == [.partial, .partial, .lastPiece])
        // An unterminated short last line is a normal line; lines around long ones stay whole.
        let mixed = pieces(Array("one\n".utf8) + [UInt8](repeating: a, count: 20000) + Array("\ntwo\nthree".utf8), chunk: chunk)
        #expect(mixed.map(\.count) == [3, 16384, 3616, 3, 5])
        #expect(mixed.map(\.piece) == [.line, .partial, .lastPiece, .line, .line])
    }

    @Test func neverCutsAUTF8SequenceBetweenPieces() {
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 16383) + Array("é€b\n".utf8)
        let result = pieces(input, chunk: 5000)
        #expect(result.map(\.count) == [16383, 6])
        #expect(String(decoding: result[1].bytes, as: UTF8.self) == "é€b")
    }

    @Test func clockFormatsUTCWithMilliseconds() {
        var clock = LogClock()
        #expect(String(decoding: clock.format(seconds: 0, milliseconds: 0), as: UTF8.self) == "1970-01-01T00:00:00.000Z")
        #expect(String(decoding: clock.format(seconds: 1_764_072_000, milliseconds: 123), as: UTF8.self) == "2025-11-25T12:00:00.123Z")
        #expect(String(decoding: clock.format(seconds: 1_764_072_000, milliseconds: 7), as: UTF8.self) == "2025-11-25T12:00:00.007Z")
        #expect(clock.now().count == 24)
    }

    // MARK: - Multiplexer with real pipes and processes

    @Test func interleavingChildrenDeliverEveryLineOnceIntactAndInOrder() async throws {
        try await withTemporaryDirectory { directory in
            let outputPath = directory.appendingPathComponent("out.log").path
            let output = try openOutput(outputPath)
            defer { close(output) }
            let multiplexer = LogMultiplexer(output: output)
            let children = 4
            let perChild = 400
            let pad = String(repeating: "x", count: 300)
            var pids: [pid_t] = []
            let closed = LockedBox(0)
            for child in 0..<children {
                let out = try TestPipe()
                let err = try TestPipe()
                let script = """
                    i=0; while [ $i -lt \(perChild) ]; do printf '{"msg":"c\(child)-%d","pad":"\(pad)"}\\n' $i; \
                    if [ $((i % 50)) -eq 0 ]; then printf 'plain \(child) %d\\n' $i >&2; fi; i=$((i+1)); done
                    """
                let pid = try spawnShell(script, stdout: out.write, stderr: err.write)
                out.closeWrite()
                err.closeWrite()
                pids.append(pid)
                multiplexer.attach(out.takeRead(), source: LogSource(program: "p", instance: child, pid: pid, stream: .stdout)) {
                    closed.withLock { $0 += 1 }
                }
                multiplexer.attach(err.takeRead(), source: LogSource(program: "p", instance: child, pid: pid, stream: .stderr)) {
                    closed.withLock { $0 += 1 }
                }
            }
            multiplexer.emit(#"{"program":"supervisor","msg":"started"}"#)
            for pid in pids { #expect(try await waitForExit(pid) == 0) }
            #expect(await multiplexer.drain(timeout: .seconds(20)))
            #expect(closed.withLock { $0 } == children * 2)
            await multiplexer.shutdown()

            let lines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.last == "")
            var seen: [Int: [Int]] = [:]
            var plain = 0
            var supervisorLines = 0
            for line in lines.dropLast() {
                let parsed = try #require(object(String(line)), "not one JSON object: \(line.prefix(200))")
                let message = try #require(parsed["msg"] as? String)
                if parsed["program"] as? String == "supervisor" {
                    supervisorLines += 1
                    #expect(line == #"{"program":"supervisor","msg":"started"}"#)
                    continue
                }
                let instance = try #require(parsed["instance"] as? Int)
                if parsed["stream"] as? String == "stderr" {
                    #expect(message.hasPrefix("plain \(instance) "))
                    #expect(parsed["level"] as? String == "warning")
                    plain += 1
                    continue
                }
                #expect(parsed["pad"] as? String == pad)
                let parts = message.dropFirst().split(separator: "-")
                #expect(Int(parts[0]) == instance)
                seen[instance, default: []].append(Int(parts[1]) ?? -1)
            }
            #expect(supervisorLines == 1)
            #expect(plain == children * perChild / 50)
            for child in 0..<children { #expect(seen[child] == Array(0..<perChild)) }
            #expect(multiplexer.statistics.lines == lines.count - 1)
            #expect(multiplexer.statistics.open == 0)
        }
    }

    @Test func aLongUnterminatedLineComesInPiecesAndOnCloseFollowsTheLastLine() async throws {
        try await withTemporaryDirectory { directory in
            let outputPath = directory.appendingPathComponent("out.log").path
            let output = try openOutput(outputPath)
            defer { close(output) }
            let multiplexer = LogMultiplexer(output: output)
            let pipe = try TestPipe()
            let pid = try spawnShell("head -c 40960 /dev/zero | tr '\\000' a", stdout: pipe.write)
            pipe.closeWrite()
            let sawLastLine = LockedBox<Bool?>(nil)
            multiplexer.attach(pipe.takeRead(), source: LogSource(program: "long", instance: 0, pid: pid, stream: .stdout)) {
                // Runs after the pipe's last line was written.
                let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
                sawLastLine.withLock { $0 = text.split(separator: "\n").count == 3 }
            }
            #expect(try await waitForExit(pid) == 0)
            #expect(await multiplexer.drain(timeout: .seconds(20)))
            #expect(sawLastLine.withLock { $0 } == true)
            await multiplexer.shutdown()
            let lines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 3)
            let parsed = lines.compactMap { object(String($0)) }
            #expect(parsed.map { ($0["msg"] as? String)?.count ?? -1 } == [16384, 16384, 8192])
            #expect(parsed.map { $0["partial"] as? Bool } == [true, true, nil])
            #expect(multiplexer.statistics.partialPieces == 2)
        }
    }

    @Test func drainTimesOutWhileAPipeIsOpenAndShutdownFlushesItsLastLine() async throws {
        try await withTemporaryDirectory { directory in
            let outputPath = directory.appendingPathComponent("out.log").path
            let output = try openOutput(outputPath)
            defer { close(output) }
            let multiplexer = LogMultiplexer(output: output)
            let pipe = try TestPipe()
            let closed = LockedBox(false)
            multiplexer.attach(pipe.takeRead(), source: LogSource(program: "held", instance: 0, pid: 1, stream: .stdout)) {
                closed.withLock { $0 = true }
            }
            pipe.writeString("first\nunterminated")
            #expect(await multiplexer.drain(timeout: .milliseconds(200)) == false)
            #expect(closed.withLock { $0 } == false)
            // Like a grandchild holding the pipe: shutdown does not wait for it forever.
            await multiplexer.shutdown(timeout: .milliseconds(100))
            #expect(closed.withLock { $0 })
            let messages = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n").map { object(String($0))?["msg"] as? String }
            #expect(messages == ["first", "unterminated"])
            pipe.closeWrite()
            // After shutdown a pipe is closed at once and its onClose runs.
            let late = try TestPipe()
            let lateClosed = LockedBox(false)
            multiplexer.attach(late.takeRead(), source: LogSource(program: "late", instance: 0, pid: 1, stream: .stdout)) {
                lateClosed.withLock { $0 = true }
            }
            #expect(lateClosed.withLock { $0 })
            late.closeWrite()
            multiplexer.emit(#"{"msg":"after shutdown"}"#)
            #expect(try String(contentsOfFile: outputPath, encoding: .utf8).hasSuffix("{\"msg\":\"after shutdown\"}\n"))
        }
    }

    @Test func aClosedOutputPipeDoesNotBlockTheChildren() async throws {
        try await withTemporaryDirectory { directory in
            let output = try TestPipe()
            output.closeRead()  // nobody reads the supervisor's stdout any more
            let combined = try RotatingLogFile(path: directory.appendingPathComponent("all.log").path, maxBytes: 0)
            let multiplexer = LogMultiplexer(output: output.write, combinedFile: combined)
            let pipe = try TestPipe()
            // ~1.5 MiB, far more than a pipe holds.
            let pid = try spawnShell(
                "i=0; while [ $i -lt 5000 ]; do printf '{\"msg\":\"line %d\",\"pad\":\"%0250d\"}\\n' $i 0; i=$((i+1)); done",
                stdout: pipe.write)
            pipe.closeWrite()
            multiplexer.attach(pipe.takeRead(), source: LogSource(program: "chatty", instance: 0, pid: pid, stream: .stdout))
            #expect(try await waitForExit(pid, timeout: .seconds(30)) == 0)
            #expect(await multiplexer.drain(timeout: .seconds(20)))
            await multiplexer.shutdown()
            let statistics = multiplexer.statistics
            #expect(statistics.lines == 5000)
            #expect(statistics.droppedBytes == statistics.bytes)
            // The files still get every line.
            let lines = try String(contentsOfFile: combined.path, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 5000)
            output.closeWrite()
        }
    }

    // MARK: - Files

    @Test func rotatesBySizeKeepingTheConfiguredBackups() throws {
        try withTemporaryDirectorySync { directory in
            let path = directory.appendingPathComponent("logs/nested/program.log").path
            let file = try RotatingLogFile(path: path, maxBytes: 1000, backups: 3)
            for index in 0..<100 {
                try file.append(line: #"{"n":\#(index),"pad":"\#(String(repeating: "x", count: 80))"}"#)
            }
            let manager = FileManager.default
            #expect(manager.fileExists(atPath: path))
            for index in 1...3 { #expect(manager.fileExists(atPath: "\(path).\(index)")) }
            #expect(!manager.fileExists(atPath: "\(path).4"))
            var numbers: [Int] = []
            for candidate in ["\(path).3", "\(path).2", "\(path).1", path] {
                let data = try #require(manager.contents(atPath: candidate))
                #expect(data.count <= 1000)
                #expect(data.last == UInt8(ascii: "\n"))
                for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                    numbers.append(try #require(object(String(line))?["n"] as? Int))
                }
            }
            // The newest lines, contiguous and in order, ending with the last one written.
            #expect(numbers.last == 99)
            #expect(numbers == Array((100 - numbers.count)..<100))
            let attributes = try manager.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o644 } == 0o644)

            // backups 0: truncated instead of kept.
            let single = directory.appendingPathComponent("single.log").path
            let truncating = try RotatingLogFile(path: single, maxBytes: 500, backups: 0)
            for index in 0..<50 { try truncating.append(line: "line \(index) " + String(repeating: "y", count: 40)) }
            #expect(!manager.fileExists(atPath: single + ".1"))
            let kept = try String(contentsOfFile: single, encoding: .utf8)
            #expect(kept.utf8.count <= 500)
            #expect(kept.hasSuffix(String(repeating: "y", count: 40) + "\n"))
            #expect(kept.contains("line 49 "))

            // maxBytes 0: never rotates; a line longer than maxBytes gets a file of its own.
            let unbounded = try RotatingLogFile(path: directory.appendingPathComponent("unbounded.log").path, maxBytes: 0)
            for _ in 0..<100 { try unbounded.append(line: String(repeating: "z", count: 100)) }
            #expect(unbounded.size == 10_100)
            #expect(!manager.fileExists(atPath: unbounded.path + ".1"))
            let big = try RotatingLogFile(path: directory.appendingPathComponent("big.log").path, maxBytes: 50, backups: 2)
            try big.append(line: "small")
            try big.append(line: String(repeating: "b", count: 120))
            #expect(big.size == 121)
            #expect(try String(contentsOfFile: big.backupPath(1), encoding: .utf8) == "small\n")
        }
    }

    @Test func perProgramFilesGetTheMergedLinesAndRotate() async throws {
        try await withTemporaryDirectory { directory in
            let outputPath = directory.appendingPathComponent("out.log").path
            let output = try openOutput(outputPath)
            defer { close(output) }
            let programFile = try RotatingLogFile(path: directory.appendingPathComponent("s3-copy.log").path, maxBytes: 4096, backups: 2)
            let multiplexer = LogMultiplexer(output: output)
            var pids: [pid_t] = []
            for instance in 0..<2 {
                let pipe = try TestPipe()
                let pid = try spawnShell(
                    "i=0; while [ $i -lt 100 ]; do printf '{\"msg\":\"i\(instance) %d\"}\\n' $i; i=$((i+1)); done", stdout: pipe.write)
                pipe.closeWrite()
                pids.append(pid)
                multiplexer.attach(
                    pipe.takeRead(), source: LogSource(program: "s3-copy", instance: instance, pid: pid, stream: .stdout, file: programFile))
            }
            multiplexer.emit(#"{"msg":"supervisor only"}"#)
            for pid in pids { #expect(try await waitForExit(pid) == 0) }
            #expect(await multiplexer.drain(timeout: .seconds(20)))
            await multiplexer.shutdown()
            let stdoutLines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n")
            #expect(stdoutLines.count == 201)
            var fileLines: [Substring] = []
            for candidate in [programFile.backupPath(2), programFile.backupPath(1), programFile.path] {
                let text = try String(contentsOfFile: candidate, encoding: .utf8)
                #expect(text.utf8.count <= 4096)
                fileLines += text.split(separator: "\n")
            }
            #expect(!FileManager.default.fileExists(atPath: programFile.backupPath(3)))
            // The newest lines of the program, exactly as on stdout.
            let programLines = stdoutLines.filter { $0.contains(#""program":"s3-copy""#) }
            #expect(Array(programLines.suffix(fileLines.count)) == fileLines)
        }
    }

    @Test func reopenFilesAfterAMoveWritesToAFreshFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("supervisor.log").path
            let sink = try openOutput("/dev/null")
            defer { close(sink) }
            let combined = try RotatingLogFile(path: path, maxBytes: 0)
            let multiplexer = LogMultiplexer(output: sink, combinedFile: combined)
            multiplexer.emit(#"{"msg":"before"}"#)
            #expect(await multiplexer.drain())
            try FileManager.default.moveItem(atPath: path, toPath: path + ".old")
            multiplexer.emit(#"{"msg":"moved, not yet reopened"}"#)
            #expect(await multiplexer.drain())
            try multiplexer.reopenFiles()
            multiplexer.emit(#"{"msg":"after"}"#)
            #expect(await multiplexer.drain())
            await multiplexer.shutdown()
            #expect(try String(contentsOfFile: path + ".old", encoding: .utf8) == "{\"msg\":\"before\"}\n{\"msg\":\"moved, not yet reopened\"}\n")
            #expect(try String(contentsOfFile: path, encoding: .utf8) == "{\"msg\":\"after\"}\n")
        }
    }

    @Test func benchmarkRunsAndCountsEveryLine() async throws {
        let result = try await LogMultiplexer.benchmark(lines: 20_000, children: 4)
        #expect(result.lines == 20_000)
        #expect(result.linesPerSecond > 0)
        #expect(object(result.json)?["lines"] as? Int == 20_000)
    }
}

// MARK: - Helpers

/// Serializes pipe creation and spawning in these tests, so that no child inherits another test's
/// pipe end between `pipe` and `FD_CLOEXEC` (which would delay that pipe's end of file).
private let spawnLock = NSLock()

/// A pipe whose ends close on exec.
private final class TestPipe: @unchecked Sendable {
    private(set) var read: Int32
    private(set) var write: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        spawnLock.lock()
        defer { spawnLock.unlock() }
        guard pipe(&fds) == 0 else { throw TestSetupError(message: "pipe: \(String(cString: strerror(errno)))") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        read = fds[0]
        write = fds[1]
    }

    /// The read end, handed over (to the multiplexer, which closes it).
    func takeRead() -> Int32 {
        defer { read = -1 }
        return read
    }

    func closeRead() {
        if read >= 0 { close(read) }
        read = -1
    }

    func closeWrite() {
        if write >= 0 { close(write) }
        write = -1
    }

    func writeString(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(write, $0.baseAddress, $0.count) }
    }

    deinit {
        closeRead()
        closeWrite()
    }
}

/// Starts `/bin/sh -c script` with its stdout (and stderr) on the given descriptors.
private func spawnShell(_ script: String, stdout: Int32, stderr: Int32? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, stdout, 1)
    if let stderr {
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    let arguments = ["/bin/sh", "-c", script]
    let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 1)
    defer {
        for index in 0..<arguments.count { free(argv[index]) }
        argv.deallocate()
    }
    for (index, argument) in arguments.enumerated() { argv[index] = strdup(argument) }
    argv[arguments.count] = nil
    var pid: pid_t = 0
    spawnLock.lock()
    let status = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
    spawnLock.unlock()
    guard status == 0 else { throw TestSetupError(message: "posix_spawn: \(String(cString: strerror(status)))") }
    return pid
}

/// Waits for `pid` to exit and returns its exit code.
private func waitForExit(_ pid: pid_t, timeout: Duration = .seconds(20)) async throws -> Int32 {
    let deadline = ContinuousClock.now + timeout
    while true {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { return (status >> 8) & 0xff }
        if result < 0, errno != EINTR { throw TestSetupError(message: "waitpid: \(String(cString: strerror(errno)))") }
        if ContinuousClock.now > deadline {
            kill(pid, SIGKILL)
            throw TestSetupError(message: "process \(pid) did not exit in time (blocked on its output?)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

private func openOutput(_ path: String) throws -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TestSetupError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
    return fd
}

private func withTemporaryDirectorySync(_ body: (URL) throws -> Void) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-log-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try body(directory)
}
