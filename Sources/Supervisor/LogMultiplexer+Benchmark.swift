import ConcurrencySupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension LogMultiplexer {
    /// What ``benchmark(lines:children:output:)`` measured.
    public struct BenchmarkResult: Sendable, Hashable {
        /// Lines the writers wrote (and the multiplexer wrote out).
        public var lines: Int
        /// Writer threads, each with its own pipe.
        public var children: Int
        /// Bytes the multiplexer wrote.
        public var bytes: Int
        /// From the first write to the last line written out.
        public var seconds: Double
        /// `lines / seconds`.
        public var linesPerSecond: Double
        /// Output MiB per second.
        public var mebibytesPerSecond: Double

        /// One JSON object (the last line of `exchanger bench supervisor`).
        public var json: String {
            func rounded(_ value: Double) -> String { String(format: "%.1f", value) }
            return """
                {"benchmark":"log-multiplexer","lines":\(lines),"children":\(children),"bytes":\(bytes),\
                "seconds":\(String(format: "%.3f", seconds)),"lines_per_second":\(rounded(linesPerSecond)),\
                "mib_per_second":\(rounded(mebibytesPerSecond))}
                """
        }
    }

    /// Multiplexes `lines` log lines from `children` pipes, each fed by its own writer thread
    /// writing one typical worker line (~200 bytes of JSON, every tenth line plain text) per
    /// `write(2)`, into `output` (default `/dev/null`), and reports the throughput.
    public static func benchmark(lines: Int, children: Int, output: String = "/dev/null") async throws -> BenchmarkResult {
        let children = max(1, children)
        let lines = max(children, lines)
        let sink = open(output, O_WRONLY | O_CLOEXEC)
        guard sink >= 0 else { throw LogFileError(.open, "cannot open \(output): \(String(cString: strerror(errno)))") }
        defer { close(sink) }
        let multiplexer = LogMultiplexer(output: sink)
        var writeEnds: [Int32] = []
        for child in 0..<children {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else {
                for fd in writeEnds { close(fd) }
                await multiplexer.shutdown(timeout: .zero)
                throw LogFileError(.open, "pipe: \(String(cString: strerror(errno)))")
            }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            let source = LogSource(
                program: "s3-copy", instance: child, pid: Int32(10_000 + child), stream: .stdout,
                fields: [("deploymentId", "dep-\(child)")])
            multiplexer.attach(fds[0], source: source)
            writeEnds.append(fds[1])
        }

        let start = ContinuousClock.now
        for (child, fd) in writeEnds.enumerated() {
            let count = lines / children + (child < lines % children ? 1 : 0)
            let thread = Thread {
                nameCurrentThread("bench-writer-\(child)")
                writeSampleLines(fd: fd, count: count, child: child)
                close(fd)
            }
            thread.start()
        }
        let drained = await multiplexer.drain(timeout: .seconds(600))
        let elapsed = ContinuousClock.now - start
        let statistics = multiplexer.statistics
        await multiplexer.shutdown(timeout: .zero)
        guard drained, statistics.lines == lines else {
            throw LogFileError(.read, "the multiplexer wrote \(statistics.lines) of \(lines) lines")
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return BenchmarkResult(
            lines: lines, children: children, bytes: statistics.bytes, seconds: seconds,
            linesPerSecond: Double(lines) / max(seconds, 1e-9),
            mebibytesPerSecond: Double(statistics.bytes) / 1_048_576 / max(seconds, 1e-9))
    }
}

/// Writes `count` lines like a worker's: JSON log lines, every tenth one plain text.
private func writeSampleLines(fd: Int32, count: Int, child: Int) {
    var samples: [[UInt8]] = []
    for index in 0..<50 {
        let line: String
        if index % 10 == 9 {
            line = "warning: retrying request \(index) to http://127.0.0.1:9000/bucket/case_42/documents/\(index) after timeout\n"
        } else {
            line = """
                {"time":"2026-11-25T12:00:00.\(100 + index)Z","level":"info","msg":"copied document","program":"exchanger-s3-copy",\
                "logger":"worker","jobId":"0f8c2b1e-\(child)","caseId":42,"batchId":7,"documentId":\(123_456 + index),\
                "bytes":1048576,"ms":12.5}

                """
        }
        samples.append(Array(line.utf8))
    }
    for index in 0..<count {
        let sample = samples[index % samples.count]
        sample.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            var written = 0
            while written < bytes.count {
                let result = write(fd, base + written, bytes.count - written)
                if result > 0 { written += result } else if result < 0, errno == EINTR { continue } else { return }
            }
        }
    }
}
