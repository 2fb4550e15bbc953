"""Operations checks across domains: agent KPIs per project and in total,
actual double bookings, and data quality of the contact feeds."""
