"""The per-box host process: owns the VMM child and serves the agent on agent.sock."""
