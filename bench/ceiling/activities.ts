/** The ceiling workflow's one activity: does nothing, so only Temporal's own cost is measured. */
export const ceilingActivities = {
  async touch(): Promise<void> {},
};

export type CeilingActivities = typeof ceilingActivities;
