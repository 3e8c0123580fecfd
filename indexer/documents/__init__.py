"""The document pipeline: discovery, planning, markdown, chunking, embedding, sync, search."""
