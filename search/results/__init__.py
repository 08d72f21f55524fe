"""What a search produced: analysis, the report, the dashboard, the winners exported, cost estimates."""
