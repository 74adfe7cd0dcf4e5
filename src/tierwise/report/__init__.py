"""The report: headline figures, charts and pages, rendered to one offline HTML file."""
