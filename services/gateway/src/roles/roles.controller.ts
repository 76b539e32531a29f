import { Body, Controller, Get, Inject, Param, Post, Put, Query } from '@nestjs/common';
import {
  AccessControlRpc,
  CreateRoleBodySchema,
  GrantsSchema,
  IdParamSchema,
  PageQuerySchema,
  pageSchema,
  PutGrantsBodySchema,
  RoleSchema,
  toPageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';

@Controller('api/v1/roles')
export class RolesController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a role (admin)',
    tags: ['roles'],
    body: CreateRoleBodySchema,
    status: 201,
    response: RoleSchema,
    errors: ['CONFLICT'],
    admin: true,
  })
  create(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(AccessControlRpc.createRole, { actor, ...parse(CreateRoleBodySchema, body, 'body') });
  }

  @Get()
  @ApiRoute({
    summary: 'List roles (admin)',
    tags: ['roles'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(RoleSchema),
    admin: true,
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(AccessControlRpc.listRoles, {
      actor,
      page: toPageRequest(parse(PageQuerySchema, query, 'query')),
    });
  }

  @Get(':id/grants')
  @ApiRoute({
    summary: "A role's grants (admin)",
    tags: ['roles'],
    params: IdParamSchema,
    status: 200,
    response: GrantsSchema,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  grants(@Caller() actor: Principal, @Param() params: unknown) {
    return this.rpc.call(AccessControlRpc.getGrants, { actor, ...parse(IdParamSchema, params, 'path') });
  }

  @Put(':id/grants')
  @ApiRoute({
    summary: 'Replace a role\'s grants (admin); resource_id "*" covers every resource of the type',
    tags: ['roles'],
    params: IdParamSchema,
    body: PutGrantsBodySchema,
    status: 200,
    response: GrantsSchema,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  putGrants(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.putGrants, {
      actor,
      id,
      grants: parse(PutGrantsBodySchema, body, 'body').grants,
    });
  }
}
