"""Model building and loading: SAM, the LLaVA-family LLM, VITRON's own heads, and the tiny offline profile."""
