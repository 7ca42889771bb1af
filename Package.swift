// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

let package = Package(
    name: "DocumentExchanger",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "exchanger", targets: ["exchanger"]),
        .executable(name: "exchanger-s3-copy", targets: ["exchanger-s3-copy"]),
        .executable(name: "exchanger-status-update", targets: ["exchanger-status-update"]),
        .executable(name: "exchanger-dlq", targets: ["exchanger-dlq"]),
        .executable(name: "exchanger-supervisor", targets: ["exchanger-supervisor"]),
        .executable(name: "exchanger-exec", targets: ["exchanger-exec"]),
        .executable(name: "exchanger-orchestrator", targets: ["exchanger-orchestrator"]),
        .executable(name: "exchanger-uploader", targets: ["exchanger-uploader"]),
        .executable(name: "exchanger-pre-uploader", targets: ["exchanger-pre-uploader"]),
        .executable(name: "exchanger-re-ocr", targets: ["exchanger-re-ocr"]),
        .executable(name: "exchanger-search-text", targets: ["exchanger-search-text"]),
        // The ten Swift executables above in one binary, chosen by argv[0]: the container image.
        .executable(name: "exchanger-multicall", targets: ["exchanger-multicall"]),
        .library(name: "Broker", targets: ["Broker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        // Hummingbird's own dependencies, named here because OrchestratorService imports them.
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        // Tests only: Tests/SupervisorTests parses docker/compose*.yaml with a real YAML library.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // C libraries, through system-library targets (Debian: libpq-dev, libsqlite3-dev).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]
        ),

        // Linux calls the Glibc module does not export (prctl subreaper, pipe2).
        .target(name: "CSystemShims"),

        // Threads for blocking work (the per-connection executor, runBlocking) and small locks.
        .target(name: "ConcurrencySupport", swiftSettings: strict),
        // Shared database vocabulary: values, rows, errors, the connection pool.
        .target(name: "DatabaseSupport", dependencies: ["ConcurrencySupport"], swiftSettings: strict),
        // Thin, safe wrappers over libpq and SQLite; every connection runs on its own thread.
        .target(name: "PostgresClient", dependencies: ["CLibPQ", "ConcurrencySupport", "DatabaseSupport"], swiftSettings: strict),
        .target(name: "SQLiteClient", dependencies: ["CSQLite", "ConcurrencySupport", "DatabaseSupport"], swiftSettings: strict),
        // swift-log handler writing JSON lines.
        .target(name: "ExchangerLogging", dependencies: [logging], swiftSettings: strict),
        // posix_spawn-based child processes (benchmarks, tests, later the supervisor).
        .target(name: "ProcessSupport", dependencies: ["ConcurrencySupport"], swiftSettings: strict),

        // The broker: SQS/SNS semantics over PostgreSQL or SQLite.
        .target(
            name: "Broker",
            dependencies: ["ConcurrencySupport", "DatabaseSupport", "ExchangerLogging", "PostgresClient", "SQLiteClient", logging],
            swiftSettings: strict
        ),

        // The event contract: event types, the versioned envelope, deterministic ids, filter attributes.
        .target(
            name: "ExchangerEvents",
            dependencies: ["Broker", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),

        // Object storage: file:// directories and s3:// (our SigV4 client over AsyncHTTPClient); key layouts.
        .target(
            name: "ObjectStorage",
            dependencies: [
                "ConcurrencySupport", logging,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Per-case databases ({prefix}_{caseId}): locating them, the batch status table.
        .target(
            name: "CaseDatabase",
            dependencies: ["DatabaseSupport", "PostgresClient", "SQLiteClient", logging],
            swiftSettings: strict
        ),

        // The poll loop every processor runs: outcomes, backoff, leases, staging, signals, logs, metrics.
        .target(
            name: "WorkerRuntime",
            dependencies: [
                "Broker", "ConcurrencySupport", "Deployments", "ExchangerEvents", "ExchangerLogging", "ObjectStorage", "ProcessSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                logging,
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Processors, each a library with a thin executable.
        .target(
            name: "S3CopyProcessor",
            dependencies: ["Broker", "ExchangerEvents", "ObjectStorage", "WorkerRuntime", logging, .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .target(
            name: "StatusUpdateProcessor",
            dependencies: ["Broker", "CaseDatabase", "ExchangerEvents", "WorkerRuntime", logging, .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .target(
            name: "DeadLetterProcessor",
            dependencies: ["Broker", "DatabaseSupport", "ExchangerEvents", "WorkerRuntime", logging, .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-s3-copy", dependencies: ["S3CopyProcessor", "WorkerRuntime"], swiftSettings: strict),
        .executableTarget(name: "exchanger-status-update", dependencies: ["StatusUpdateProcessor", "WorkerRuntime"], swiftSettings: strict),
        .executableTarget(name: "exchanger-dlq", dependencies: ["DeadLetterProcessor", "WorkerRuntime"], swiftSettings: strict),

        // Control-plane rows in the broker database: per-exchange worker deployments, supervisors
        // and their leases, the workers that run.
        .target(
            name: "Deployments",
            dependencies: ["Broker", "ConcurrencySupport", "DatabaseSupport", logging],
            swiftSettings: strict
        ),

        // The supervisor: supervisor.conf, spawning and reaping, restarts, per-exchange
        // deployments and autoscaling, the multiplexed log stream, its HTTP endpoint.
        .target(
            name: "Supervisor",
            dependencies: [
                "Broker", "ConcurrencySupport", "CSystemShims", "DatabaseSupport", "Deployments", "ExchangerLogging", "ProcessSupport",
                "WorkerRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                logging,
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-supervisor", dependencies: ["Supervisor"], swiftSettings: strict),
        // The C trampoline every supervised program starts through: parent-death signal, parent
        // check, working directory, then execv (posix_spawn cannot set a parent-death signal).
        .executableTarget(name: "exchanger-exec"),

        // Per-case databases' schema (case migrations), synthetic cases (`exchanger case seed`),
        // and the case-data copy engine (foreign-key walk, id map, COPY streaming, checkpoints).
        .target(
            name: "CaseData",
            dependencies: [
                "CaseDatabase", "ConcurrencySupport", "DatabaseSupport", "PostgresClient", "SQLiteClient", "ObjectStorage", logging,
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // The orchestrator's core: the exchange request, the persisted lifecycle state machine,
        // provisioning, payload construction, completion and teardown.
        .target(
            name: "Orchestrator",
            dependencies: [
                "Broker", "ConcurrencySupport", "DatabaseSupport", "Deployments", "ExchangerEvents", "CaseData", logging,
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // The orchestrator's HTTP API (Hummingbird) and its process: the API plus the lifecycle work loop.
        .target(
            name: "OrchestratorService",
            dependencies: [
                "Broker", "CaseData", "ConcurrencySupport", "DatabaseSupport", "Deployments", "ExchangerEvents", "ExchangerLogging", "Orchestrator", "ProcessSupport",
                "WorkerRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                logging,
            ],
            exclude: ["openapi.yaml"],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-orchestrator", dependencies: ["OrchestratorService"], swiftSettings: strict),

        // The document engine: the protocol the annotation path and the uploader speak, and the
        // local engine of the embedded default (documents, annotations and text in object storage).
        .target(
            name: "DocumentEngine",
            dependencies: [
                "ConcurrencySupport", "ExchangerLogging", "ObjectStorage", "ProcessSupport", logging,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The uploader: ingests each destination PDF into the destination document engine.
        .target(
            name: "UploaderProcessor",
            dependencies: [
                "Broker", "DocumentEngine", "ExchangerEvents", "ObjectStorage", "WorkerRuntime", logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-uploader", dependencies: ["UploaderProcessor", "WorkerRuntime"], swiftSettings: strict),
        .target(
            name: "PreUploaderProcessor",
            dependencies: [
                "Broker", "DocumentEngine", "ExchangerEvents", "ObjectStorage", "UploaderProcessor", "WorkerRuntime", logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-pre-uploader", dependencies: ["PreUploaderProcessor", "WorkerRuntime"], swiftSettings: strict),
        // Re-OCR: the page texts of each uploaded document → processed-files txt, then search-text.
        .target(
            name: "ReOCRProcessor",
            dependencies: [
                "Broker", "DocumentEngine", "ExchangerEvents", "ObjectStorage", "UploaderProcessor", "WorkerRuntime", logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-re-ocr", dependencies: ["ReOCRProcessor", "WorkerRuntime"], swiftSettings: strict),
        // Search-text: the page texts into the destination case's full-text index, in bulk.
        .target(
            name: "SearchTextProcessor",
            dependencies: [
                "Broker", "CaseData", "CaseDatabase", "ExchangerEvents", "ObjectStorage", "WorkerRuntime", logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger-search-text", dependencies: ["SearchTextProcessor", "WorkerRuntime"], swiftSettings: strict),

        // A whole exchange on one machine: the workspace of `exchanger run`, the supervisor it
        // starts, the orchestrator client, progress, and the exact verification of a finished exchange.
        .target(
            name: "ExchangeFleet",
            dependencies: [
                "Broker", "CaseData", "CaseDatabase", "ConcurrencySupport", "DatabaseSupport", "Deployments", "DocumentEngine",
                "ExchangerEvents", "ExchangerLogging", "ObjectStorage", "Orchestrator", "ProcessSupport", logging,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // The `exchanger` command line, as a library so it is testable; `exchanger` is its thin main.
        .target(
            name: "ExchangerCLI",
            dependencies: [
                "Broker", "DatabaseSupport", "ProcessSupport", "ExchangerLogging", "ExchangerEvents", "ObjectStorage",
                "WorkerRuntime", "S3CopyProcessor", "DeadLetterProcessor", "Deployments", "Supervisor", "CaseData",
                "ExchangeFleet", "Orchestrator", "PostgresClient", "DocumentEngine", "CaseDatabase",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                logging,
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger", dependencies: ["ExchangerCLI", "ProcessSupport"], swiftSettings: strict),
        .executableTarget(
            name: "exchanger-multicall",
            dependencies: [
                "ExchangerCLI", "ProcessSupport", "S3CopyProcessor", "StatusUpdateProcessor", "DeadLetterProcessor", "Supervisor",
                "OrchestratorService", "UploaderProcessor", "PreUploaderProcessor", "ReOCRProcessor", "SearchTextProcessor",
            ],
            swiftSettings: strict
        ),

        // What the test targets share (fresh databases, the servers scripts/test started, executables).
        .target(
            name: "ExchangerTestSupport",
            dependencies: ["Broker", "DatabaseSupport", "PostgresClient", "ProcessSupport"],
            path: "Tests/ExchangerTestSupport",
            swiftSettings: strict
        ),
        // A Nutrient Document Engine stand-in over real HTTP (the documented wire format), for the
        // client's tests and whole exchanges on the Nutrient engine.
        .target(
            name: "FakeNutrient",
            dependencies: [
                "DocumentEngine", "ObjectStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                logging,
            ],
            path: "Tests/FakeNutrient",
            swiftSettings: strict
        ),
        .testTarget(
            name: "DatabaseTests",
            dependencies: ["ConcurrencySupport", "DatabaseSupport", "PostgresClient", "SQLiteClient", "ProcessSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: ["Broker", "ConcurrencySupport", "DatabaseSupport", "ExchangerTestSupport", "PostgresClient", "ProcessSupport", "exchanger"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ObjectStorageTests",
            dependencies: ["ExchangerTestSupport", "ObjectStorage", "ProcessSupport", "exchanger"],
            swiftSettings: strict
        ),
        // A small program the supervisor tests run: exits with chosen codes, crash-loops, ignores
        // SIGTERM, forks grandchildren, prints partial lines.
        .executableTarget(
            name: "exchanger-test-child",
            dependencies: ["ProcessSupport"],
            path: "Tests/TestPrograms/exchanger-test-child",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SupervisorTests",
            dependencies: [
                "Broker", "ConcurrencySupport", "DatabaseSupport", "Deployments", "ExchangerEvents", "ExchangerTestSupport", "ExchangerLogging",
                "ObjectStorage", "ProcessSupport", "Supervisor", "WorkerRuntime",
                "exchanger", "exchanger-supervisor", "exchanger-exec", "exchanger-test-child",
                "exchanger-s3-copy", "exchanger-status-update", "exchanger-dlq", "exchanger-orchestrator", "exchanger-uploader",
                "exchanger-pre-uploader", "exchanger-re-ocr", "exchanger-search-text", "exchanger-multicall",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CaseDataTests",
            dependencies: [
                "CaseData", "CaseDatabase", "DatabaseSupport", "ExchangerTestSupport", "ObjectStorage", "PostgresClient", "SQLiteClient",
                "ProcessSupport", "exchanger",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OrchestratorTests",
            dependencies: [
                "Broker", "CaseData", "DatabaseSupport", "Deployments", "ExchangerEvents", "ExchangerTestSupport", "Orchestrator",
                "ProcessSupport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OrchestratorServiceTests",
            dependencies: [
                "Broker", "CaseData", "ConcurrencySupport", "DatabaseSupport", "Deployments", "ExchangerTestSupport", "Orchestrator",
                "OrchestratorService", "ProcessSupport", "exchanger-orchestrator", logging,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WorkerTests",
            dependencies: [
                "Broker", "CaseDatabase", "ConcurrencySupport", "DatabaseSupport", "Deployments", "ExchangerEvents", "ExchangerTestSupport", "ObjectStorage",
                "PostgresClient", "SQLiteClient", "ProcessSupport", "WorkerRuntime", "S3CopyProcessor",
                "StatusUpdateProcessor", "DeadLetterProcessor", "DocumentEngine", "UploaderProcessor", "PreUploaderProcessor",
                "CaseData", "ReOCRProcessor", "SearchTextProcessor", "FakeNutrient",
                "exchanger", "exchanger-s3-copy", "exchanger-status-update", "exchanger-dlq", "exchanger-uploader", "exchanger-pre-uploader",
                "exchanger-re-ocr", "exchanger-search-text",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                logging,
            ],
            swiftSettings: strict
        ),
        // Whole exchanges through real processes: orchestrator, supervisor and workers.
        .testTarget(
            name: "ExchangeTests",
            dependencies: [
                "Broker", "CaseData", "CaseDatabase", "DatabaseSupport", "Deployments", "ExchangeFleet", "ExchangerEvents",
                "ExchangerTestSupport", "ObjectStorage", "Orchestrator", "ProcessSupport", "DocumentEngine", "FakeNutrient",
                "exchanger", "exchanger-orchestrator", "exchanger-supervisor", "exchanger-exec", "exchanger-s3-copy",
                "exchanger-status-update", "exchanger-dlq", "exchanger-uploader", "exchanger-pre-uploader", "exchanger-re-ocr",
                "exchanger-search-text",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
