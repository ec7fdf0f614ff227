"""boxlite guest agent: PID 1 (``init``) and the gRPC agent served inside the box VM.

Importing this package must stay cheap: ``init`` (PID 1) imports it before forking
the agent, and nothing here may pull in grpc or protobuf.
"""

__version__ = "0.1.0"
