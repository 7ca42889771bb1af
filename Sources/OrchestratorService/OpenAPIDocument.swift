// The OpenAPI document of the orchestrator's API, compiled in so the executable needs no resource
// bundle next to it (the container image ships only the binaries). Generated from openapi.yaml
// beside this file by scripts/embed-openapi; OpenAPITests checks that both are the same and that
// the document's operations are exactly `OrchestratorAPI.routes`.

extension OrchestratorAPI {
    /// `openapi.yaml`, verbatim.
    static let openAPIText = ###"""
openapi: 3.1.0
info:
  title: Document Exchanger orchestrator API
  version: 1.0.0
  description: |
    Accepts document exchanges between eDiscovery cases and reports their progress.
    Every /exchanges route needs `Authorization: Bearer <token>` (tokens from EXCHANGER_API_TOKENS
    or EXCHANGER_API_TOKENS_FILE); /healthz, /readyz, /metrics and /openapi.yaml need none.
    Every error is a JSON body {"error": {"code": ..., "message": ..., "field": ...}}.
servers:
  - url: http://localhost:8080
security:
  - bearerAuth: []
paths:
  /exchanges:
    post:
      operationId: submitExchange
      summary: Accept an exchange (idempotent)
      description: |
        Validates the request and accepts the exchange under the `Idempotency-Key` header, or,
        without it, a key derived from source case, destination case, batch and selection. A retry
        with the same key and an equivalent request answers 202 with the same jobId and
        `"created": false`; the same key with another request answers 409.
      parameters:
        - $ref: '#/components/parameters/IdempotencyKey'
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/ExchangeRequest'
      responses:
        '202':
          $ref: '#/components/responses/Accepted'
        '400':
          $ref: '#/components/responses/Error'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '503':
          $ref: '#/components/responses/Unavailable'
        '409':
          $ref: '#/components/responses/Error'
        '413':
          $ref: '#/components/responses/Error'
        '415':
          $ref: '#/components/responses/Error'
    get:
      operationId: listExchanges
      summary: List exchanges, newest first
      parameters:
        - name: state
          in: query
          required: false
          description: Only exchanges in this state (TEARING_DOWN_FAILED / TEARING_DOWN_CANCELLED for the teardown states).
          schema:
            $ref: '#/components/schemas/StateFilter'
        - name: caseId
          in: query
          required: false
          description: Only exchanges whose source or destination case is this one.
          schema:
            type: integer
            format: int64
            minimum: 1
            maximum: 9223372036854775807
        - name: limit
          in: query
          required: false
          description: At most this many (default and maximum EXCHANGER_ORCHESTRATOR_LIST_LIMIT, 100).
          schema:
            type: integer
            minimum: 1
            maximum: 100
      responses:
        '200':
          description: The exchanges.
          content:
            application/json:
              schema:
                type: object
                required: [exchanges]
                properties:
                  exchanges:
                    type: array
                    items:
                      $ref: '#/components/schemas/Exchange'
        '400':
          $ref: '#/components/responses/Error'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '503':
          $ref: '#/components/responses/Unavailable'
  /exchange:
    post:
      operationId: submitExchangeSingular
      summary: Accept an exchange (the reference's path; same as POST /exchanges)
      parameters:
        - $ref: '#/components/parameters/IdempotencyKey'
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/ExchangeRequest'
      responses:
        '202':
          $ref: '#/components/responses/Accepted'
        '400':
          $ref: '#/components/responses/Error'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '503':
          $ref: '#/components/responses/Unavailable'
        '409':
          $ref: '#/components/responses/Error'
        '413':
          $ref: '#/components/responses/Error'
        '415':
          $ref: '#/components/responses/Error'
  /exchanges/{jobId}:
    parameters:
      - name: jobId
        in: path
        required: true
        schema:
          type: string
    get:
      operationId: getExchange
      summary: An exchange with its progress
      responses:
        '200':
          description: The exchange; while it runs, the counts are computed from the event log.
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Exchange'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '503':
          $ref: '#/components/responses/Unavailable'
        '404':
          $ref: '#/components/responses/Error'
    delete:
      operationId: cancelExchangeDelete
      summary: Cancel a running exchange (alias of POST /exchanges/{jobId}/cancel)
      description: Same as POST /exchanges/{jobId}/cancel.
      responses:
        '202':
          $ref: '#/components/responses/Cancelled'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '404':
          $ref: '#/components/responses/Error'
        '409':
          $ref: '#/components/responses/Error'
        '503':
          $ref: '#/components/responses/Unavailable'
  /exchanges/{jobId}/cancel:
    parameters:
      - name: jobId
        in: path
        required: true
        schema:
          type: string
    post:
      operationId: cancelExchange
      summary: Cancel a running exchange
      description: |
        Asks for cancellation; the request body is ignored. An exchange that is not final, and not
        already failing, moves to TEARING_DOWN with teardownTarget CANCELLED at once (202); the work
        loop then stops its workers, removes its queues and deployments and ends it in CANCELLED.
        Cancelling again while it tears down answers 202 again. An exchange already FINISHED, FAILED
        or CANCELLED, or tearing down towards FAILED, answers 409; an unknown job id 404. Documents
        already copied stay copied.
      responses:
        '202':
          $ref: '#/components/responses/Cancelled'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '404':
          $ref: '#/components/responses/Error'
        '409':
          $ref: '#/components/responses/Error'
        '503':
          $ref: '#/components/responses/Unavailable'
  /exchanges/{jobId}/retry:
    parameters:
      - name: jobId
        in: path
        required: true
        schema:
          type: string
    post:
      operationId: retryExchange
      summary: Retry the documents an ended exchange left behind
      description: |
        Starts a new exchange for the documents the exchange left behind (failed or not found, read
        from the destination case's ledger, less those another exchange delivered since); the request
        body is ignored. The retry has the exchange's request, those documents as documentIds, and
        retryOf set. Rows the first exchange copied keep their destination ids, so no row is copied
        twice. While the same documents are left behind, retrying again answers the same retry with
        created false; after a retry that ended with failures, retry the retry. An exchange that has
        not ended, or left nothing behind, answers 409; an unknown job id 404.
      responses:
        '202':
          $ref: '#/components/responses/Retried'
        '401':
          $ref: '#/components/responses/Unauthorized'
        '404':
          $ref: '#/components/responses/Error'
        '409':
          $ref: '#/components/responses/Error'
        '503':
          $ref: '#/components/responses/Unavailable'
  /healthz:
    get:
      operationId: health
      summary: The process is up
      security: []
      responses:
        '200':
          description: Up.
          content:
            application/json:
              schema:
                type: object
                properties:
                  status:
                    type: string
  /readyz:
    get:
      operationId: ready
      summary: The broker answers
      security: []
      responses:
        '200':
          description: Ready.
          content:
            application/json:
              schema:
                type: object
                properties:
                  status:
                    type: string
        '503':
          $ref: '#/components/responses/Error'
  /metrics:
    get:
      operationId: metrics
      summary: Prometheus metrics (text format)
      security: []
      responses:
        '200':
          description: The metrics.
          content:
            text/plain:
              schema:
                type: string
  /openapi.yaml:
    get:
      operationId: openAPI
      summary: This document
      security: []
      responses:
        '200':
          description: The OpenAPI document.
          content:
            application/yaml:
              schema:
                type: string
components:
  securitySchemes:
    bearerAuth:
      type: http
      scheme: bearer
  parameters:
    IdempotencyKey:
      name: Idempotency-Key
      in: header
      required: false
      description: 1–200 bytes without control characters; retries with the same key return the same exchange.
      schema:
        type: string
        minLength: 1
        maxLength: 200
        pattern: '^[^\u0000-\u001F\u007F-\u009F]+$'
  responses:
    Cancelled:
      description: Cancellation under way (or already under way).
      content:
        application/json:
          schema:
            type: object
            required: [jobId, state]
            properties:
              jobId:
                type: string
              state:
                type: string
                enum: [TEARING_DOWN, CANCELLED]
              teardownTarget:
                type: string
                enum: [CANCELLED]
    Accepted:
      description: Accepted (also for an idempotent retry, with created false).
      headers:
        Location:
          schema:
            type: string
      content:
        application/json:
          schema:
            type: object
            required: [jobId, state, created]
            properties:
              jobId:
                type: string
              state:
                type: string
              created:
                type: boolean
    Retried:
      description: The retry was accepted (or, with created false, an earlier retry of the same documents).
      headers:
        Location:
          schema:
            type: string
      content:
        application/json:
          schema:
            type: object
            required: [jobId, state, created, retryOf, documents]
            properties:
              jobId:
                type: string
              state:
                type: string
              created:
                type: boolean
              retryOf:
                type: string
                description: The exchange retried.
              documents:
                type: integer
                description: The documents the retry selects.
    Unauthorized:
      description: "No or an invalid bearer token (with `WWW-Authenticate: Bearer`)."
      content:
        application/json:
          schema:
            $ref: '#/components/schemas/Error'
    Unavailable:
      description: The broker database is unreachable (for example PostgreSQL restarting); retry after `Retry-After` seconds.
      headers:
        Retry-After:
          description: Seconds to wait before retrying (EXCHANGER_ORCHESTRATOR_RETRY_AFTER_SECONDS, 2).
          schema:
            type: integer
            minimum: 1
      content:
        application/json:
          schema:
            $ref: '#/components/schemas/Error'
    Error:
      description: An error.
      content:
        application/json:
          schema:
            $ref: '#/components/schemas/Error'
  schemas:
    Routing:
      type: string
      enum: [brand_in, layer]
      default: layer
    PositiveID:
      type: integer
      format: int64
      minimum: 1
    DocumentID:
      description: A positive document id; one of 2^53 or more as a decimal string (a JSON number is exact only below 2^53).
      oneOf:
        - $ref: '#/components/schemas/PositiveID'
        - type: string
          pattern: '^[1-9][0-9]{0,18}$'
    ExchangeRequest:
      type: object
      additionalProperties: false
      description: Exactly one of labelId, folderId, documentIds; destinationCaseId must differ from sourceCaseId (400 otherwise).
      required: [sourceCaseId, destinationCaseId, batchId]
      properties:
        sourceCaseId:
          $ref: '#/components/schemas/PositiveID'
        destinationCaseId:
          $ref: '#/components/schemas/PositiveID'
        batchId:
          $ref: '#/components/schemas/PositiveID'
        labelId:
          $ref: '#/components/schemas/PositiveID'
        folderId:
          $ref: '#/components/schemas/PositiveID'
        documentIds:
          type: array
          minItems: 1
          maxItems: 10000
          uniqueItems: true
          items:
            $ref: '#/components/schemas/DocumentID'
        requiresAnnotations:
          type: boolean
          default: false
        includeNatives:
          type: boolean
          default: false
        redactionsAs:
          $ref: '#/components/schemas/Routing'
        highlightsAs:
          $ref: '#/components/schemas/Routing'
        notesAs:
          $ref: '#/components/schemas/Routing'
        stickersAs:
          $ref: '#/components/schemas/Routing'
        batesAs:
          $ref: '#/components/schemas/Routing'
        confidentialityCodesAs:
          $ref: '#/components/schemas/Routing'
        skipExchanged:
          type: boolean
          default: false
          description: >-
            Leave out the selected documents that an earlier, finished exchange from the same source case
            delivered into the destination case (their destination document still existing); they are counted
            in documents.skipped. False copies them again, as new documents.
      oneOf:
        - required: [labelId]
        - required: [folderId]
        - required: [documentIds]
    StateFilter:
      type: string
      enum: [ACCEPTED, PROVISIONING, COPYING_DATABASE, CONSTRUCTING_PAYLOAD, PROCESSING, DRAINING, TEARING_DOWN_FAILED, TEARING_DOWN_CANCELLED, FINISHED, FAILED, CANCELLED]
    Exchange:
      type: object
      required: [jobId, state, step, version, request, documents, stages, payloadSent, createdAt, updatedAt]
      properties:
        jobId:
          type: string
        state:
          type: string
          enum: [ACCEPTED, PROVISIONING, COPYING_DATABASE, CONSTRUCTING_PAYLOAD, PROCESSING, DRAINING, TEARING_DOWN, FINISHED, FAILED, CANCELLED]
        teardownTarget:
          type: string
          enum: [FAILED, CANCELLED]
        step:
          type: object
          required: [of, description]
          properties:
            number:
              type: integer
              description: Position on ACCEPTED → … → FINISHED (1–7); absent off that path.
            of:
              type: integer
            description:
              type: string
        version:
          type: integer
        request:
          $ref: '#/components/schemas/ExchangeRequest'
        retryOf:
          type: string
          description: The exchange this one retries (POST /exchanges/{jobId}/retry); its request's documentIds are what that exchange left behind.
        documents:
          type: object
          required: [copied, notFound, failed, skipped]
          properties:
            total:
              type: integer
            copied:
              type: integer
            notFound:
              type: integer
            failed:
              type: integer
            skipped:
              type: integer
              description: Selected documents left out because an earlier exchange delivered them (skipExchanged).
        leftBehind:
          type: object
          description: >-
            Once the exchange ended: the destination document ids of the documents that did not arrive. Their
            copied rows stay in the destination case.
          required: [failed, notFound, truncated]
          properties:
            failed:
              type: array
              items:
                type: integer
            notFound:
              type: array
              items:
                type: integer
            truncated:
              type: boolean
              description: A list was cut at its limit (EXCHANGER_ORCHESTRATOR_LISTED_DOCUMENTS); the counts are whole.
        stages:
          type: object
          description: Per stage program (s3-copy, pre-uploader, uploader, re-ocr, search-text).
          additionalProperties:
            type: object
            required: [done, failed]
            properties:
              done:
                type: integer
              failed:
                type: integer
              total:
                type: integer
        payloadSent:
          type: integer
        error:
          type: string
        createdAt:
          type: string
          format: date-time
        updatedAt:
          type: string
          format: date-time
        finishedAt:
          type: string
          format: date-time
    Error:
      type: object
      required: [error]
      properties:
        error:
          type: object
          required: [code, message]
          properties:
            code:
              type: string
            message:
              type: string
            field:
              type: string
              description: The request field at fault (validation errors).

"""###
}
