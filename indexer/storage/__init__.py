"""All SQL lives in this package, per engine: ``sqlite/`` (the embedded default: the document
index and the agent store) and ``postgres/`` (the agent store on a server). Above them,
engine-neutral: ``protocols`` (the seam), ``engines`` (location -> implementation) and
``records`` (the dataclasses both report in)."""
