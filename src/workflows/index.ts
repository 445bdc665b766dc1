export { sessionWorkflow } from './session-workflow';
export { userWorkflow } from './user-workflow';
export { sweepWorkflow } from './sweep-workflow';
