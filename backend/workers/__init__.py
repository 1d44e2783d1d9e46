"""Workers: who is online, on which queues and devices, training what."""
