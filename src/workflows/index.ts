export { sessionWorkflow } from './session-workflow';
export { gatewayWorkflow } from './gateway-workflow';
export { userWorkflow } from './user-workflow';
export { sweepWorkflow } from './sweep-workflow';
