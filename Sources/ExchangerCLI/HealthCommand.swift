import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger health`: the containers' health probe. One HTTP GET to a local endpoint of a
/// supervisor (`/healthz`, `/readyz`) or a worker's metrics port (`/healthz`); exit 0 on a 2xx
/// answer, 1 otherwise. Plain sockets and no event loop, so it starts in milliseconds and the
/// image needs no curl.
struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Probe a local /healthz or /readyz endpoint: exit 0 on HTTP 2xx, 1 otherwise (for container health checks).",
        discussion: """
            The port defaults to EXCHANGER_HEALTH_PORT, else EXCHANGER_SUPERVISOR_HTTP_PORT, else 9100 (the supervisor). \
            Workers serve /healthz on their EXCHANGER_METRICS_PORT: exchanger health --port 9101.
            """
    )

    @Option(help: "The IPv4 address to connect to.")
    var host = "127.0.0.1"

    @Option(help: "The TCP port (default: EXCHANGER_HEALTH_PORT, else EXCHANGER_SUPERVISOR_HTTP_PORT, else 9100).")
    var port: Int?

    @Option(help: "The path to GET.")
    var path = "/healthz"

    @Option(help: "Seconds the whole probe may take (connect, send, answer).")
    var timeout = 3.0

    @Flag(help: "Print nothing, not even the answer's status line.")
    var quiet = false

    func validate() throws {
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be 1…65535") }
        if !(timeout > 0 && timeout <= 600) { throw ValidationError("--timeout must be in (0, 600] seconds") }
        if !path.hasPrefix("/") || path.contains(where: { $0 == "\r" || $0 == "\n" || $0 == " " }) {
            throw ValidationError("--path must start with / and contain no spaces or line breaks")
        }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let resolvedPort = port ?? environment["EXCHANGER_HEALTH_PORT"].flatMap { Int($0) }
            ?? environment["EXCHANGER_SUPERVISOR_HTTP_PORT"].flatMap { Int($0) } ?? 9100
        do {
            let status = try HealthProbe.get(host: host, port: resolvedPort, path: path, timeout: timeout)
            if !quiet { print("\(host):\(resolvedPort)\(path): HTTP \(status)") }
            if !(200...299).contains(status) { throw ExitCode(1) }
        } catch let error as HealthProbe.ProbeError {
            if !quiet { FileHandle.standardError.write(Data("exchanger health: \(host):\(resolvedPort)\(path): \(error.message)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}

/// A minimal blocking HTTP/1.0 GET over a POSIX socket.
enum HealthProbe {
    struct ProbeError: Error {
        var message: String
    }

    /// The status code of `GET path` at `host:port`, within `timeout` seconds.
    static func get(host: String, port: Int, path: String, timeout: Double) throws -> Int {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw ProbeError(message: "not an IPv4 address: \(host)") }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ProbeError(message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        // SO_SNDTIMEO bounds connect() as well on Linux; SO_RCVTIMEO bounds each read.
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ProbeError(message: "connect: \(String(cString: strerror(errno)))") }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw ProbeError(message: "send: \(String(cString: strerror(errno)))") }
            sent += count
        }
        // The status line is all that is needed: "HTTP/1.1 200 OK".
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        let deadline = Date().addingTimeInterval(timeout)
        while !answer.contains(UInt8(ascii: "\n")) && answer.count < 4096 {
            guard Date() < deadline else { throw ProbeError(message: "no answer within \(timeout) s") }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            guard count > 0 else { throw ProbeError(message: "recv: \(String(cString: strerror(errno)))") }
            answer.append(contentsOf: buffer[0..<count])
        }
        let line = String(decoding: answer.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw ProbeError(message: "not an HTTP answer: \(line.prefix(80))")
        }
        return status
    }
}
